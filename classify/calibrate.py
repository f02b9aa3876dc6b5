"""Temperature scaling, class-prior correction and expected calibration error for the classifiers' probabilities."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Re-soften softmax outputs: softmax(log p / T). Argmax is unchanged for any T > 0."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def correct_prior(probs: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """``probs`` divided by ``prior ** strength`` (the share of each class in training), renormalised: with
    strength 1, the probabilities a model would give had it been trained on every class equally often (the
    logit adjustment for a shift of class prior). Strength 0 leaves them as they are."""
    if not strength:
        return probs
    adjusted = np.asarray(probs, np.float64) / np.power(np.asarray(prior, np.float64), strength)
    return (adjusted / np.maximum(adjusted.sum(axis=1, keepdims=True), 1e-300)).astype(np.float32)


def share_others(probs: np.ndarray, others: np.ndarray, blast: int) -> np.ndarray:
    """``probs`` with its column ``blast`` kept and the rest shared out in the proportions of ``others`` (the same
    cells' probabilities made another way): rows still sum to 1, P(blast) is unchanged."""
    rest = np.delete(np.asarray(others, np.float64), blast, axis=1)
    rest /= np.maximum(rest.sum(axis=1, keepdims=True), 1e-300)
    kept = np.asarray(probs, np.float64)[:, blast]
    return np.insert(rest * (1 - kept)[:, None], blast, kept, axis=1).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


TEMPERATURE_BOUNDS = (0.05, 20.0)  # where the fit looks; a fit at a bound found no temperature that fits


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood on held-out (validation) predictions."""
    loss = lambda t: nll(apply_temperature(probs, t), labels)  # noqa: E731
    return float(minimize_scalar(loss, bounds=TEMPERATURE_BOUNDS, method="bounded").x)


def at_bound(temperature: float, rel: float = 0.02) -> bool:
    """Whether a fitted temperature sits at a bound of the fit (within ``rel`` of it): no temperature fits."""
    low, high = TEMPERATURE_BOUNDS
    return not low * (1 + rel) < temperature < high * (1 - rel)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (equal-width bins)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)
