"""hptrack analysis: sensitivity, overfitting diagnostics and strategy comparison."""
