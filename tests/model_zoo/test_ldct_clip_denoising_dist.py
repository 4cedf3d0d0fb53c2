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

# The bundle's multi-process unit test in the MONAI model zoo's format (ci/unit_tests/runner.py -b NAME --dist True):
# torchrun with one process per GPU, or two gloo processes on the CPU when there is no GPU. Fake data only.

import os
import shutil
import tempfile
import unittest

import torch
from parameterized import parameterized
# the single-process test's settings and fake data (it lies beside this file in ci/unit_tests)
from test_ldct_clip_denoising import TEST_CASE_1, TEST_CASE_2, write_volume
from utils import export_config_and_run_mgpu_cmd

class TestLdctClipDenoisingMGPU(unittest.TestCase):
    def setUp(self):
        self.dataset_dir = tempfile.mkdtemp()
        self.output_dir = tempfile.mkdtemp()
        for s in range(3):
            write_volume(os.path.join(self.dataset_dir, f"P{s}.nii.gz"), seed=s)
        self.n_proc = torch.cuda.device_count() or 2  # gloo processes on a machine without GPUs

    def tearDown(self):
        shutil.rmtree(self.dataset_dir)
        shutil.rmtree(self.output_dir)

    @parameterized.expand([TEST_CASE_1])  # multi-process training
    def test_train_mgpu_config(self, override):
        override["dataset_dir"] = self.dataset_dir
        override["ckpt_dir"] = os.path.join(self.output_dir, "models")
        override["output_dir"] = os.path.join(self.output_dir, "logs")
        bundle_root = override["bundle_root"]
        export_config_and_run_mgpu_cmd(
            config_file=[os.path.join(bundle_root, "configs/train.json"),
                         os.path.join(bundle_root, "configs/multi_gpu_train.json")],
            logging_file=os.path.join(bundle_root, "configs/logging.conf"),
            meta_file=os.path.join(bundle_root, "configs/metadata.json"),
            override_dict=override,
            output_path=os.path.join(bundle_root, "configs/train_override.json"),
            ngpu=self.n_proc,
        )
        self.assertTrue(os.path.isfile(os.path.join(self.output_dir, "models", "model.pt")))

    @parameterized.expand([TEST_CASE_2])  # multi-process inference: the cases sharded over the ranks
    def test_infer_mgpu_config(self, override):
        override["dataset_dir"] = self.dataset_dir
        override["output_dir"] = os.path.join(self.output_dir, "denoised")
        bundle_root = override["bundle_root"]
        export_config_and_run_mgpu_cmd(
            config_file=[os.path.join(bundle_root, "configs/inference.json"),
                         os.path.join(bundle_root, "configs/multi_gpu_inference.json")],
            logging_file=os.path.join(bundle_root, "configs/logging.conf"),
            meta_file=os.path.join(bundle_root, "configs/metadata.json"),
            override_dict=override,
            output_path=os.path.join(bundle_root, "configs/inference_override.json"),
            workflow_type="infer",
            ngpu=self.n_proc,
        )
        for s in range(3):
            self.assertTrue(os.path.isfile(os.path.join(self.output_dir, "denoised", f"P{s}.nii.gz")))


if __name__ == "__main__":
    unittest.main()
