"""The synthetic clinical world: X-ray phantoms, 12-lead ECGs and reports with known ground truth."""
