"""The article's algorithm as it wrote it, over the rows: the reference the core must match."""

import numpy as np


def article_loop(
    x: np.ndarray, y: np.ndarray, alpha: float, iterations: int
) -> tuple[float, float, list[float]]:
    """Batch gradient descent from zero on [1, x]; returns silver, gold and the cost after
    each update."""
    m = y.shape[0]
    design = np.hstack((np.ones((m, 1)), x.reshape(-1, 1)))
    target = y.reshape(-1, 1)
    theta = np.zeros((2, 1))
    history = []
    for _ in range(iterations):
        gradient = (1 / m) * (design.dot(theta) - target).T.dot(design)
        theta = theta - alpha * gradient.T
        history.append(float((1 / (2 * m)) * np.sum((design.dot(theta) - target) ** 2)))
    return float(theta[0, 0]), float(theta[1, 0]), history
