// Open a study in OHIF with headless Chromium (playwright-core, Debian's chromium) and save what it shows.
//
//   NODE_PATH=<viewer folder>/node_modules node tests/ohif_check.cjs BASE STUDY SERIES PATIENT OUT [CHROMIUM]
//
// BASE serves OHIF (tests/viewer_server.py). Writes to OUT: studylist.png / studylist.txt (the study list with
// the study of patient PATIENT (as the list shows the name) selected, its series listed), viewer.png (the viewer on SERIES of STUDY), canvas.png (the viewport's
// rendered image alone, as cornerstone drew it), and report.json (the viewer's text, console errors, failed
// requests, the steps done). Exits non-zero, with the error in report.json, when a step cannot be done.
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const [base, study, series, patientName, out, exe = "/usr/bin/chromium"] = process.argv.slice(2);
const report = { console: [], failed: [], steps: [] };
const save = () => fs.writeFileSync(path.join(out, "report.json"), JSON.stringify(report, null, 1));
const TIMEOUT = 120000;

async function skipTour(page) {
  // OHIF's first-visit guided tour covers part of the viewport
  const skip = page.getByText("Skip all", { exact: true });
  if (await skip.count()) await skip.first().click().catch(() => {});
}

(async () => {
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    // no GPU here: WebGL through SwiftShader, cornerstone's renderer
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.on("console", (m) => { if (m.type() === "error") report.console.push(m.text().slice(0, 300)); });
    page.on("requestfailed", (r) => report.failed.push(`${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on("response", (r) => { if (r.status() >= 400) report.failed.push(`${r.url()} HTTP ${r.status()}`); });

    // 1. the study list; selecting the study lists its series in the side panel
    await page.goto(`${base}/`, { waitUntil: "domcontentloaded" });
    const patient = page.getByText(patientName, { exact: true }).first();
    await patient.waitFor({ timeout: TIMEOUT });
    report.steps.push("study list");
    await patient.click();
    await page.getByText("Modality", { exact: false }).first().waitFor({ timeout: TIMEOUT });
    await page.waitForTimeout(1500);
    report.studylist = await page.locator("body").innerText();
    fs.writeFileSync(path.join(out, "studylist.txt"), report.studylist);
    await page.screenshot({ path: path.join(out, "studylist.png") });
    report.steps.push("series of the study");

    // 2. the viewer on the series: wait until the first image is displayed (the overlay shows its W/L)
    await page.goto(`${base}/viewer?StudyInstanceUIDs=${study}&SeriesInstanceUIDs=${series}`,
                    { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => /W:\s*-?[\d.]+\s*L:\s*-?[\d.]+/.test(document.body.innerText),
                               null, { timeout: TIMEOUT });
    report.steps.push("image displayed");
    await page.waitForTimeout(1500);
    await skipTour(page);
    await page.waitForTimeout(1000);
    report.viewer = await page.locator("body").innerText();
    await page.screenshot({ path: path.join(out, "viewer.png") });
    // the rendered pixels alone (no overlays): the viewport's canvas
    const dataUrl = await page.evaluate(() => {
      const canvas = document.querySelector(".cornerstone-viewport-element canvas");
      return canvas ? canvas.toDataURL("image/png") : null;
    });
    if (!dataUrl) throw new Error("no viewport canvas");
    fs.writeFileSync(path.join(out, "canvas.png"), Buffer.from(dataUrl.split(",")[1], "base64"));
    report.steps.push("screenshots");
  } finally {
    save();
    await browser.close();
  }
})().catch((e) => {
  report.error = String((e && e.stack) || e).slice(0, 2000);
  save();
  console.error(report.error);
  process.exit(1);
});
