"""Cooperative cancellation (fillgap.cancel): a fill stops at its next step once its token is set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fillgap.cancel import Cancelled, CancelToken, cancel_on, checkpoint
from fillgap.fill import inpaint
from fillgap.methods import get_method
from fillgap.models import create_model


def test_checkpoint_does_nothing_outside_a_cancellable_block():
    checkpoint()
    token = CancelToken()
    token.cancel("first")
    token.cancel("second")
    assert token.reason == "first"
    with pytest.raises(Cancelled, match="first"), cancel_on(token):
        checkpoint()
    checkpoint()  # the block's token is gone again


def test_a_networks_forward_pass_stops_between_layers():
    method = get_method(create_model("ffc-tiny"))
    x, m = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    m[..., 8:20, 8:20] = 1
    token = CancelToken()
    with cancel_on(token):
        method.fill(x, m)  # not cancelled: runs
        token.cancel("stop")
        with pytest.raises(Cancelled):
            method.fill(x, m)  # a single call, no pipeline loop around it


def test_the_pipeline_stops_between_windows():
    calls = []

    def count(img, hole):
        calls.append(1)
        return img

    from fillgap.methods import ClassicalMethod

    image = np.zeros((300, 300, 3), np.uint8)
    mask = np.zeros((300, 300), np.uint8)
    mask[40:43, 40:43] = mask[240:243, 240:243] = 255  # two windows
    token = CancelToken()
    token.cancel("stop")
    with pytest.raises(Cancelled), cancel_on(token):
        inpaint(image, mask, ClassicalMethod("count", count, 4096))
    assert calls == []
