"""Jet constituents → (Δη, Δφ, pT/pT_jet) → pT images, vectorised over jets (no per-jet loop)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JetKinematics:
    """Per-jet four-vector sums and per-constituent coordinates relative to the jet axis.

    delta_eta, delta_phi, pt_fraction, is_real: (n_jets, n_constituents); delta_phi in radians
    wrapped to [-π, π). pt, mass in GeV; eta, phi of the jet axis.
    """

    delta_eta: np.ndarray
    delta_phi: np.ndarray
    pt_fraction: np.ndarray
    is_real: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray


def jet_kinematics(constituents: np.ndarray) -> JetKinematics:
    """constituents: (n_jets, n_constituents, 4) as (E, px, py, pz) in GeV, zero-padded.

    The jet four-vector is the sum of its constituents (never the truth columns).
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    energy, px, py, pz = (constituents[..., i] for i in range(4))
    pt = np.hypot(px, py)
    is_real = pt > 0
    safe_pt = np.where(is_real, pt, 1.0)
    eta = np.arcsinh(pz / safe_pt)
    phi = np.arctan2(py, px)

    jet_e, jet_px, jet_py, jet_pz = energy.sum(1), px.sum(1), py.sum(1), pz.sum(1)
    jet_pt = np.hypot(jet_px, jet_py)
    safe_jet_pt = np.where(jet_pt > 0, jet_pt, 1.0)
    jet_eta = np.arcsinh(jet_pz / safe_jet_pt)
    jet_phi = np.arctan2(jet_py, jet_px)
    jet_mass = np.sqrt(np.maximum(jet_e**2 - jet_px**2 - jet_py**2 - jet_pz**2, 0.0))

    delta_phi = np.mod(phi - jet_phi[:, None] + np.pi, 2 * np.pi) - np.pi
    return JetKinematics(
        delta_eta=np.where(is_real, eta - jet_eta[:, None], 0.0),
        delta_phi=np.where(is_real, delta_phi, 0.0),
        pt_fraction=np.where(is_real, pt / safe_jet_pt[:, None], 0.0),
        is_real=is_real,
        pt=jet_pt,
        eta=jet_eta,
        phi=jet_phi,
        mass=jet_mass,
    )


def pixelate(
    kinematics: JetKinematics, size: int = 16, radius: float = 0.8, normalise: bool = True
) -> np.ndarray:
    """pT-weighted images (n_jets, size, size) float32; axis 1 is Δη, axis 2 is Δφ, both in [-R, R].

    Binning follows ``np.histogram2d(Δη, Δφ, bins=size, range=[[-R, R], [-R, R]])`` exactly: bins are
    closed on the left, the last bin also holds values equal to +R, everything outside is dropped.
    With ``normalise`` each image sums to one (empty images stay zero).
    """
    if not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if not radius > 0:
        raise ValueError(f"image radius must be positive, got {radius!r}")
    n_jets = kinematics.pt.shape[0]
    edges = np.linspace(-radius, radius, size + 1)
    eta_bin = _bin_index(kinematics.delta_eta, edges)
    phi_bin = _bin_index(kinematics.delta_phi, edges)
    inside = kinematics.is_real & (eta_bin >= 0) & (eta_bin < size) & (phi_bin >= 0) & (phi_bin < size)
    jet_index = np.broadcast_to(np.arange(n_jets)[:, None], inside.shape)
    flat = (jet_index[inside] * size + eta_bin[inside]) * size + phi_bin[inside]
    images = np.bincount(flat, weights=kinematics.pt_fraction[inside], minlength=n_jets * size * size)
    images = images.reshape(n_jets, size, size)
    if normalise:
        totals = images.sum(axis=(1, 2), keepdims=True)
        images = np.divide(images, totals, out=np.zeros_like(images), where=totals > 0)
    return images.astype(np.float32)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = len(edges) - 2
    return index


def jet_images(
    constituents: np.ndarray, size: int = 16, radius: float = 0.8, normalise: bool = True
) -> np.ndarray:
    """Shortcut: constituents (n_jets, n_constituents, 4) → images (n_jets, size, size) float32."""
    return pixelate(jet_kinematics(constituents), size=size, radius=radius, normalise=normalise)


def jet_images_reference(
    constituents: np.ndarray, size: int = 16, radius: float = 0.8, normalise: bool = True
) -> np.ndarray:
    """The straightforward per-jet ``np.histogram2d`` loop the notebooks use; kept as the reference."""
    kin = jet_kinematics(constituents)
    images = np.zeros((len(constituents), size, size))
    for i in range(len(constituents)):
        real = kin.is_real[i]
        image, _, _ = np.histogram2d(
            kin.delta_eta[i][real],
            kin.delta_phi[i][real],
            bins=size,
            range=[[-radius, radius], [-radius, radius]],
            weights=kin.pt_fraction[i][real],
        )
        if normalise and image.sum() > 0:
            image = image / image.sum()
        images[i] = image
    return images.astype(np.float32)
