# Copyright (c) MONAI Consortium and ldct-clip developers
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# The bundle's unit test in the MONAI model zoo's format: the zoo's ci/unit_tests/runner.py runs it from the zoo's
# root with the bundle at models/ldct_clip_denoising (tests/test_model_zoo.py does exactly that). Fake data only.

import os
import shutil
import tempfile
import unittest

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow
from parameterized import parameterized
from utils import check_workflow

BUNDLE_ROOT = "models/ldct_clip_denoising"
TINY_NETWORK = {"network_def#layers": [1, 1, 1, 1], "network_def#width": 8, "network_def#encoder_weights": None}

TEST_CASE_1 = [  # train, evaluate
    {
        "bundle_root": BUNDLE_ROOT,
        **TINY_NETWORK,
        "held_out": ["P2"],  # validation: the held-out patient with the training noise (one folder given)
        "iterations": 4,
        "val_interval": 2,
        "batch_size": 2,
        "crop_size": 32,
        "num_workers": 0,
        "roi_size": [64, 64],
        "log_interval": 1,
        "classical": [],
        "progress": False,
    }
]

TEST_CASE_2 = [  # inference with the demo weights that ship in the package
    {"bundle_root": BUNDLE_ROOT, "weights": "demo", "roi_size": [64, 64], "progress": False}
]


def test_order(test_name1, test_name2):
    def get_order(name):
        if "train" in name:
            return 1
        if "eval" in name:
            return 2
        if "infer" in name:
            return 3
        return 4

    return get_order(test_name1) - get_order(test_name2)


def write_volume(path, seed, shape=(64, 64, 6)):
    """A fake CT volume in HU (int16), 0.7 mm pixels, 2 mm slices."""
    rng = np.random.default_rng(seed)
    hu = np.clip(rng.normal(0.0, 300.0, shape), -1024, 2000).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.0, 1.0])), path)


class TestLdctClipDenoising(unittest.TestCase):
    def setUp(self):
        self.dataset_dir = tempfile.mkdtemp()
        self.output_dir = tempfile.mkdtemp()
        for s in range(3):
            write_volume(os.path.join(self.dataset_dir, f"P{s}.nii.gz"), seed=s)
        self.ldct_dir = os.path.join(self.output_dir, "ldct")
        self.ndct_dir = os.path.join(self.output_dir, "ndct")
        os.makedirs(self.ldct_dir)
        os.makedirs(self.ndct_dir)
        write_volume(os.path.join(self.ldct_dir, "case0.nii.gz"), seed=10, shape=(64, 64, 2))
        write_volume(os.path.join(self.ndct_dir, "case0.nii.gz"), seed=11, shape=(64, 64, 2))

    def tearDown(self):
        shutil.rmtree(self.dataset_dir)
        shutil.rmtree(self.output_dir)

    @parameterized.expand([TEST_CASE_1])
    def test_train_eval_config(self, override):
        override["dataset_dir"] = self.dataset_dir
        override["ckpt_dir"] = os.path.join(self.output_dir, "models")
        override["output_dir"] = os.path.join(self.output_dir, "logs")
        bundle_root = override["bundle_root"]
        trainer = ConfigWorkflow(
            workflow_type="train",
            config_file=os.path.join(bundle_root, "configs/train.json"),
            logging_file=os.path.join(bundle_root, "configs/logging.conf"),
            meta_file=os.path.join(bundle_root, "configs/metadata.json"),
            **override,
        )
        check_workflow(trainer, check_properties=True)
        trained = os.path.join(self.output_dir, "models", "model.pt")
        self.assertTrue(os.path.isfile(trained))

        # evaluate.json is laid over inference.json (it reuses its reader, inferer and post-processing)
        evaluator = ConfigWorkflow(
            workflow_type="eval",
            config_file=[os.path.join(bundle_root, "configs/inference.json"),
                         os.path.join(bundle_root, "configs/evaluate.json")],
            logging_file=os.path.join(bundle_root, "configs/logging.conf"),
            meta_file=os.path.join(bundle_root, "configs/metadata.json"),
            bundle_root=bundle_root,
            ckpt_path=trained,
            ldct_dir=self.ldct_dir,
            ndct_dir=self.ndct_dir,
            output_dir=os.path.join(self.output_dir, "eval"),
            **{k: override[k] for k in (*TINY_NETWORK, "roi_size", "classical", "progress")},
        )
        check_workflow(evaluator, check_properties=True)
        self.assertTrue(os.path.isfile(os.path.join(self.output_dir, "eval", "per_slice.csv")))

    @parameterized.expand([TEST_CASE_2])
    def test_infer_config(self, override):
        override["dataset_dir"] = self.dataset_dir
        override["output_dir"] = os.path.join(self.output_dir, "denoised")
        bundle_root = override["bundle_root"]
        inferrer = ConfigWorkflow(
            workflow_type="infer",
            config_file=os.path.join(bundle_root, "configs/inference.json"),
            logging_file=os.path.join(bundle_root, "configs/logging.conf"),
            meta_file=os.path.join(bundle_root, "configs/metadata.json"),
            **override,
        )
        check_workflow(inferrer, check_properties=True)
        for s in range(3):
            self.assertTrue(os.path.isfile(os.path.join(self.output_dir, "denoised", f"P{s}.nii.gz")))


if __name__ == "__main__":
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = test_order
    unittest.main(testLoader=loader)
