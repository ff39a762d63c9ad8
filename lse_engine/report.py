"""Render an evolution tree: as text (rich) and as an image (matplotlib), winner marked."""

from __future__ import annotations

from pathlib import Path

from rich.tree import Tree as RichTree

from lse_engine.evolve.tree import Node, Tree


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _label(node: Node, winner: int) -> str:
    first = (node.instructions.strip().splitlines() or [""])[0]
    first = first if len(first) <= 60 else first[:57] + "…"
    star = " [bold yellow]★ winner[/]" if node.id == winner else ""
    status = "" if node.status == "ok" else f" [dim]({node.status}{': ' + node.error if node.error else ''})[/]"
    no_answer = f" · no answer {_pct(node.no_answer)}" if node.no_answer else ""
    return (f"[bold]#{node.id}[/] dev {_pct(node.dev_score)} · train {_pct(node.train_score)} · "
            f"visits {node.visits}{no_answer}{status}{star} [dim]{first}[/]")


def tree_text(tree: Tree, title: str = "evolution tree") -> RichTree:
    winner = tree.winner().id
    rich_tree = RichTree(title)
    handles: dict[int, RichTree] = {}

    def add(node: Node, parent: RichTree) -> None:
        handles[node.id] = parent.add(_label(node, winner))
        for child in sorted(tree.children(node.id), key=lambda n: n.id):
            add(child, handles[node.id])

    if 0 in tree.nodes:
        add(tree.root, rich_tree)
    return rich_tree


def _layout(tree: Tree) -> dict[int, tuple[float, float]]:
    """x by leaf order (parents centred over children), y by depth."""
    pos: dict[int, tuple[float, float]] = {}
    next_x = [0.0]

    def place(node: Node, depth: int) -> float:
        kids = sorted(tree.children(node.id), key=lambda n: n.id)
        if not kids:
            x = next_x[0]
            next_x[0] += 1
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = sum(xs) / len(xs)
        pos[node.id] = (x, -depth)
        return x

    if 0 in tree.nodes:
        place(tree.root, 0)
    return pos


def tree_image(tree: Tree, path: str | Path, title: str = "") -> Path:
    """Write a PNG (or SVG, by suffix) of the tree: nodes coloured by dev score, the winner ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _layout(tree)
    winner = tree.winner().id
    width = max(4.0, 1.2 * (max((x for x, _ in pos.values()), default=0) + 1))
    height = max(3.0, 1.2 * (1 - min((y for _, y in pos.values()), default=0)))
    fig, ax = plt.subplots(figsize=(min(width, 30), min(height, 20)))
    cmap = plt.get_cmap("viridis")
    for node in tree.nodes.values():
        if node.parent is not None and node.parent in pos and node.id in pos:
            (x0, y0), (x1, y1) = pos[node.parent], pos[node.id]
            ax.plot([x0, x1], [y0, y1], color="#999999", zorder=1)
    for node in tree.nodes.values():
        x, y = pos[node.id]
        color = cmap(node.dev_score) if node.dev_score is not None else "#dddddd"
        ax.scatter([x], [y], s=700, color=color, edgecolors="red" if node.id == winner else "black",
                   linewidths=3 if node.id == winner else 1, zorder=2, marker="o" if node.status == "ok" else "X")
        ax.annotate(f"#{node.id}\n{_pct(node.dev_score)}", (x, y), ha="center", va="center", fontsize=7, zorder=3,
                    color="white" if (node.dev_score or 0) < 0.6 else "black")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="dev score")
    ax.set_title(title or f"evolution tree (winner #{winner}, ringed red)")
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
