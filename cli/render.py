"""Text rendering of a memory summary (genmem.summary) for `genmem info`."""

from __future__ import annotations


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def render_summary(s: dict) -> str:
    g = s["generator"]
    unit = s["capacity_unit"]
    classes = ", ".join(c["name"] if c["name"] == str(c["label"]) else f"{c['label']} ({c['name']})"
                        for c in s["classes"])
    lines = [
        f"memory    {s['memory']}",
        f"version   {s['version']} of {len(s['versions'])} ({', '.join(s['versions'])}); parent "
        f"{s['parent'] or 'none'}; created {s['created']}",
        f"generator {g.get('arch', 'dcgan')} {g['variant'].upper()}, {g['channels']}x{g['image_size']}x"
        f"{g['image_size']} images, noise {g['noise_dim']}, initial widths {'/'.join(map(str, g['initial_widths']))}"
        f"{', class-conditional norms' if g.get('class_norm') else ''}",
        f"classes   {classes}",
        "",
        f"Tasks: widths they were learned at, parameters stored after them, and per masked layer the capacity "
        f"(in {unit}) they newly reserved, reused from earlier tasks, and left free.",
    ]
    header = f"{'task':>4}  {'classes':<12} {'widths':<12} {'params':>9}  {'layer':>5} {'total':>9} {'new':>9} " \
             f"{'reused':>9} {'free':>9}"
    lines += [header, "-" * len(header)]
    names = {c["label"]: c["name"] for c in s["classes"]}
    for task in s["tasks"]:
        for layer, cap in enumerate(task["capacity"]):
            lead = (f"{task['task']:>4}  {', '.join(names[c] for c in task['classes'])[:12]:<12} "
                    f"{'/'.join(map(str, task['widths'])):<12} {task['parameters']['total']:>9,}"
                    if layer == 0 else " " * 41)
            lines.append(f"{lead}  {layer + 1:>5} {cap['total']:>9,} {cap['new']:>9,} {cap['reused']:>9,} "
                         f"{cap['free']:>9,}")
    first, last = s["tasks"][0], s["tasks"][-1]
    growth = last["parameters"]["shared"] / max(first["parameters"]["shared"], 1)
    lines += [
        "",
        f"growth    shared weights x{growth:.2f} since the first task; the next task starts at widths "
        f"{'/'.join(map(str, s['next_widths']))}, with at least {sum(s['free_per_layer_initially']):,} free {unit} "
        f"as the first had",
        f"storage   weights {_kb(s['storage_bytes']['weights'])} in {_storage_types(s['tasks'])}, bit-packed masks "
        f"{_kb(s['storage_bytes']['masks'])}, version total {_kb(s['storage_bytes']['total'])}",
    ]
    return "\n".join(lines + quality_lines(s) + privacy_lines(s) + unfinished_lines(s))


def _storage_types(tasks: list[dict]) -> str:
    """The type the weights are stored in, or per type the tasks that chose it: 'float32 (tasks 0, 1), bfloat16
    (task 2)'."""
    chosen: dict[str, list[str]] = {}
    for task in tasks:
        chosen.setdefault(task["storage_dtype"], []).append(str(task["task"]))
    if len(chosen) == 1:
        return next(iter(chosen))
    return ", ".join(f"{dtype} (task{'s' * (len(ids) > 1)} {', '.join(ids)})" for dtype, ids in chosen.items())


def unfinished_lines(s: dict) -> list[str]:
    """A task stopped after a checkpoint: what it is and how to continue it."""
    task = s.get("unfinished_task")
    if task is None:
        return []
    if task["damaged"]:
        return ["", f"unfinished a damaged task checkpoint ({_kb(task['bytes'])}): the next learn-task starts afresh "
                    f"and replaces it"]
    classes = ", ".join(map(str, task["classes"]))
    return ["", f"unfinished a task of labels {classes}, checkpointed after epoch {task['epoch']} of {task['epochs']} "
                f"({_kb(task['bytes'])}): rerun its learn-task to continue it"]


def quality_lines(s: dict) -> list[str]:
    """Per class, the replay quality measured when it was learned, and where the version's sample strip is."""
    if not s["quality"]:
        return []
    lines = ["", "Replay quality when learned: recognised = % of 64 generated images the solver puts in their class; "
                 "diversity = their mean pairwise distance over the real images' (1.0: as varied).",
             f"{'class':<14} {'task':>4} {'recognised':>10} {'diversity':>9}"]
    for row in s["quality"]:
        recognised = "-" if row["recognised"] is None else f"{row['recognised']:.1f}%"
        diversity = "-" if row["diversity"] is None else f"{row['diversity']:.2f}"
        lines.append(f"{row['name'][:14]:<14} {row['task']:>4} {recognised:>10} {diversity:>9}")
    if s["samples"]:
        lines.append(f"samples   {s['samples']} (one row per class); `genmem report` draws a page with plots and grids")
    return lines


def privacy_lines(s: dict) -> list[str]:
    """What the version's parts saw of the real images, each task's DP guarantee, and the audits made of it."""
    p = s["privacy"]
    lines = ["", f"privacy   solver `{p['solver']}`" + (f": {p['about']}" if p["about"] else "")]
    for task in p["tasks"]:
        dp = task["dp"]
        guarantee = (f"({dp['epsilon']:.2f}, {dp['delta']:g})-DP (noise {dp['noise_multiplier']:.3f}, clip "
                     f"{dp['max_grad_norm']:g}, sample rate {dp['sample_rate']:.4f}, {dp['steps']} steps)"
                     if dp else "no DP guarantee")
        held = f"; {task['held_out']} images held out for audits" if task["held_out"] else ""
        lines.append(f"          task {task['task']}: {guarantee}{held}")
    lines += budget_lines(p.get("budget"))
    for audit in s["audits"]:
        lines.append(f"audit     {audit['path']}: {audit['members']} members vs {audit['non_members']} non-members "
                     f"({audit['non_members_source']}); worst AUC {audit['worst_auc']:.3f}, copy rate "
                     f"{audit['copy_rate']['rate']:.2%} ({audit['copy_rate']['expected_without_copying']:.0%} "
                     f"without copying)")
        for attack in audit["attacks"]:
            low, high = attack["auc_interval"]
            lines.append(f"            {attack['part']:<9} {attack['attack']:<48} AUC {attack['auc']:.3f} "
                         f"({low:.3f}-{high:.3f}), TPR@1%FPR {attack['tpr_at_1pct_fpr']:.1%}")
    return lines


# Seconds per image and GAN epoch of a task on 2 CPU cores, the solver phase included: the quick MNIST DGMw
# profile's 596 s for ten tasks of 1,000 images x 40 epochs (docs/experiments/2026-11-25-mnist-quick-profile.md).
# 64 px costs about 3.5 times as much per image (docs/your-data.md), the residual generator about 3 times.
CPU_SECONDS_PER_IMAGE_EPOCH = 1.5e-3
CPU_COST_FACTORS = {"64 px": 3.5, "resnet": 3.0}


def describe_recipe(recipe_source: str, recipe: str, variant: str, config, device, images: int, arch: str,
                    image_size: int) -> str:
    """What learn-task is about to train (`recipe_source`: the profile's name, or whence the settings came), and
    how long that takes on 2 CPU cores, in one line."""
    per_class = "every image" if config.gan_images_per_class is None else f"{config.gan_images_per_class:,} images"
    private = ("" if config.dp_epsilon is None else
               f" with the {config.dp_loss} loss, DP-SGD at epsilon {config.dp_epsilon:g}")
    critic_options = [name for name, chosen in (("projection head", config.critic_head == "projection"),
                                                ("hinge loss", config.gan_loss == "hinge"),
                                                ("spectrally normalised", config.spectral_norm)) if chosen]
    critic = f"critic {config.critic_width} wide" + (f" ({', '.join(critic_options)})" if critic_options else "")
    line = (f"recipe: {recipe_source} for {recipe} data ({arch} {variant.upper()}): the GAN on "
            f"{per_class} of each class for {config.epochs} epochs, {critic}{private}, "
            f"learning rate {config.lr:g}; the {config.solver} solver after it")
    if device.type != "cpu":
        return line
    passes = min(images, config.gan_images_per_class or images) * config.epochs
    factor = (CPU_COST_FACTORS["64 px"] if image_size >= 64 else 1.0) * (CPU_COST_FACTORS["resnet"]
                                                                       if arch == "resnet" else 1.0)
    minutes = passes * CPU_SECONDS_PER_IMAGE_EPOCH * factor / 60
    return (f"{line}; {passes:,} image passes, about {max(minutes, 0.1):.1f} minutes on 2 CPU cores (a GPU is much "
            f"faster; --profile and --gan-epochs change it)")


def budget_lines(budget: dict | None) -> list[str]:
    """The memory's DP total under both readings (genmem.privacy_budget): an image in one task, a person in all."""
    if budget is None:
        return []
    worst, basic, composed = budget["per_task"], budget["basic"], budget["composed"]
    lines = [f"dp total  an image in one task: ({worst['epsilon']:.2f}, {worst['delta']:g})-DP at most (task "
             f"{worst['task']}); each image is in one task, so epsilons do not add up"]
    if len(budget["dp_tasks"]) > 1:
        basic_text = f"({basic['epsilon']:.2f}, {basic['delta']:g})"
        reading = (f"{basic_text}-DP by basic composition (install genmem[dp] for RDP's)" if composed is None else
                   f"({composed['epsilon']:.2f}, {composed['delta']:g})-DP by RDP composition (basic: {basic_text})")
        lines.append(f"          a person with an image in each of the {len(budget['dp_tasks'])} DP tasks: {reading}")
    if budget["tasks_without_dp"]:
        lines.append(f"          no guarantee for the images of task(s) "
                     f"{', '.join(map(str, budget['tasks_without_dp']))}, learned without DP")
    return lines
