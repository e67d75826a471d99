"""The loss-curve picture: train (dashed) and val (solid) loss per step of one run or several."""

from charrnn.atomic import atomic_path

COLOURS = ("tab:orange", "tab:blue", "tab:green", "tab:red")


def plot_losses(curves, path):
    """Draw {name: history rows (step, train_loss, val_loss)} into the PNG `path`, atomically, one colour
    a run; a run without rows is left out, and a run named "" is labelled by its curves alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for (name, rows), colour in zip(curves.items(), COLOURS):
        if rows:
            steps, prefix = [row["step"] for row in rows], f"{name}: " if name else ""
            axes.plot(steps, [row["train_loss"] for row in rows], "--", color=colour, label=f"{prefix}train")
            axes.plot(steps, [row["val_loss"] for row in rows], "-", color=colour, label=f"{prefix}val")
    axes.set(xlabel="step", ylabel="loss (nats/char)", title="charrnn loss")
    axes.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
