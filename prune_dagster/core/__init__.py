"""Pure algorithms: numpy / scikit-learn / imbalanced-learn / torch. Nothing here imports dagster."""
