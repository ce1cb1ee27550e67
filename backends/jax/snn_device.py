"""Device names of the JAX model backend (SPEC S4.16).

``run.device`` names a JAX device as ``platform[:index]``: ``cpu``, ``cpu:0``, ``gpu``,
``gpu:1``, ``tpu:0``, and the PyTorch spellings ``cuda`` / ``cuda:0`` for ``gpu``.  The
index counts the platform's devices in `jax.devices` order (default 0).  The canonical
name is ``"{platform}:{index}"``, e.g. ``"cpu:0"``.
"""

from __future__ import annotations

import re

import jax

__all__ = ["PLATFORMS", "available_devices", "device_name", "platform_devices",
           "resolve_device"]

PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}
"""Accepted platform names -> JAX platform."""

_NAME = re.compile(r"([a-z]+)(?::(\d+))?")


def platform_devices(platform: str) -> list[jax.Device]:
    """The devices of a JAX ``platform`` (``cpu``, ``gpu``, ``tpu``) in `jax.devices`
    order; empty when JAX has no such platform here.

    Examples
    --------
    >>> len(platform_devices("cpu")) >= 1
    True
    """
    try:
        return list(jax.devices(platform))
    except RuntimeError:  # JAX has no such platform here
        return []


def available_devices() -> list[str]:
    """Canonical names of every device JAX can use here.

    Examples
    --------
    >>> "cpu:0" in available_devices()
    True
    """
    names: list[str] = []
    for platform in dict.fromkeys(PLATFORMS.values()):
        names += [f"{platform}:{i}" for i in range(len(platform_devices(platform)))]
    return names


def device_name(device: jax.Device) -> str:
    """The canonical name ``"{platform}:{index}"`` of a JAX device.

    Examples
    --------
    >>> device_name(jax.devices("cpu")[0])
    'cpu:0'
    """
    platform = PLATFORMS.get(device.platform, device.platform)
    devices = platform_devices(platform)
    index = devices.index(device) if device in devices else device.id
    return f"{platform}:{index}"


def resolve_device(device: str) -> tuple[jax.Device, str]:
    """The JAX device named ``device`` and its canonical name.

    Raises
    ------
    TypeError
        ``device`` is not a string.
    ValueError
        ``device`` is not of the form ``platform[:index]`` with a platform of `PLATFORMS`,
        or no such device exists (the message lists `available_devices`).

    Examples
    --------
    >>> resolve_device("cpu")[1]
    'cpu:0'
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'gpu:0', got "
                        f"{type(device).__name__} {device!r}")
    match = _NAME.fullmatch(device.strip().lower())
    if match is None or match[1] not in PLATFORMS:
        raise ValueError(f"device {device!r} is not a JAX device name; expected "
                         f"platform[:index] with platform one of {sorted(PLATFORMS)} "
                         f"(e.g. 'cpu', 'gpu:1'); available: {available_devices()}")
    platform = PLATFORMS[match[1]]
    index = int(match[2] or 0)
    devices = platform_devices(platform)
    if index >= len(devices):
        raise ValueError(f"device {device!r} ({platform}:{index}) does not exist here; "
                         f"available JAX devices: {available_devices()}")
    return devices[index], f"{platform}:{index}"
