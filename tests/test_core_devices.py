"""One device-string helper for everything that hands a device to Sionna."""

import torch

from intelliflow.devices import device_string, rank_device


def test_device_strings_are_explicit(monkeypatch):
    assert device_string("cpu") == device_string(torch.device("cpu")) == "cpu"
    assert device_string("cuda:1") == device_string(torch.device("cuda", 1)) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert device_string("cuda") == "cuda:2"  # a bare "cuda" is the current device, not device 0


def test_rank_devices_cycle_over_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [rank_device(r) for r in range(3)] == [torch.device(f"cuda:{i}") for i in (0, 1, 0)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device(5) == torch.device("cpu")
