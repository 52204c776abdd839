"""The shipped ``backprojection`` model: classical back-projection through the pipeline, nothing learned."""

from __future__ import annotations

import numpy as np
import torch

from geosr.degrade import area_average
from geosr.evaluate import classical
from geosr.models import list_models
from geosr.models.classical import backprojection_card, write, zero_network
from geosr.models.files import load_model
from geosr.predict import downscale
from geosr.testing import fbm_surface


def test_the_shipped_file_is_what_the_module_writes(tmp_path):
    shipped = load_model("backprojection")
    made = load_model(write(tmp_path / "bp.safetensors"))
    assert shipped.card == made.card == backprojection_card()
    for key, value in shipped.network.state_dict().items():
        assert torch.equal(value, made.network.state_dict()[key]) and not value.any(), key
    assert shipped.card.kernel.name == "consistent" and shipped.card.conserve
    assert "backprojection" in list_models()
    x = torch.randn(2, 1, 9, 11)
    assert torch.equal(zero_network().residual(x), torch.zeros_like(x))


def test_its_output_is_back_projection_conserved_and_the_same_in_any_tiles():
    fine = fbm_surface((96, 120), seed=11, relief=500.0).astype(np.float64)
    for scale in (2, 3, 4):
        coarse = area_average(fine, scale)
        out = downscale(coarse, scale, "backprojection", device="cpu").astype(np.float64)
        tol = 1e-4 * np.ptp(fine)
        # the limit of iterative back-projection: 20 iterations of evaluate's come within a small fraction
        reference = classical(coarse, scale, "backprojection")
        inner = (slice(4 * scale, -4 * scale),) * 2
        assert np.sqrt(np.mean((out - reference)[inner] ** 2)) < 0.01 * np.sqrt(np.mean((reference - fine)[inner] ** 2))
        np.testing.assert_allclose(area_average(out, scale), coarse, atol=tol)  # conserved
        tiled = downscale(coarse, scale, "backprojection", device="cpu", tile_size=16)
        np.testing.assert_allclose(tiled, out, atol=tol)  # no seams
