"""Membership-inference audit: can an attacker tell a task's training images from other images of its classes?

Every part a version ships is attacked with a score that should be higher for
training images (members) than for other real images (non-members):

    generator, pixel distance     -distance from the image to its nearest generated image of its class
    generator, feature distance   the same in a fixed feature space (GAN-Leaks, Chen et al. 2020)
    solver loss / confidence      -cross-entropy of the stored solver on the image / its top softmax probability
    critic score                  the real-or-fake score, where an older (format 1) version ships the critic head

With an independent reference set of real images (never trained on), the
distance scores are calibrated per image: the distance to the nearest
reference image minus the distance to the nearest generated one, so that an
image that is simply typical (close to everything) is not mistaken for a
member. Each attack reports ROC AUC with a bootstrap interval and the true
positive rate at 1 % and 0.1 % false positives (Carlini et al. 2022): 0.5 and
~FPR mean the attacker learns nothing. The copy rate is the share of
generated images closer to a training image than all but 5 % of fresh real
images are.

The feature space is a small convolutional network with random weights drawn
from a fixed seed: it needs no download, is the same for every memory, and
has seen no data, so it cannot carry a leak of its own (the memory's own
solver trunk could: in `real` mode it trained on the members). Random
convolutional features still compare images by local structure rather than
by raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from genmem.artifact import decode_shipped_critic, decode_solver, has_solver, solver_mode
from genmem.data import ImageSet
from genmem.errors import DataError
from genmem.evaluate import images_of_classes
from genmem.grids import grid_png
from genmem.holdout import split_recorded
from genmem.memory import Memory
from genmem.nets import conv_trunk, dcgan_init_
from genmem.pixels import to_unit_range

COPY_QUANTILE = 0.05  # a generated image is a near-copy if closer to a training image than 95 % of fresh real ones
FEATURE_SEED = 0
FALSE_POSITIVE_RATES = (0.01, 0.001)
HOLDOUT = "holdout"  # --non-members holdout: the images the tasks held out of training


def roc_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """P(a member scores above a non-member), ties counting half: the Mann-Whitney U statistic over both counts."""
    ranks = rankdata(np.concatenate([members, non_members]))  # average ranks, so ties count half
    member_rank_sum = ranks[: len(members)].sum()
    u = member_rank_sum - len(members) * (len(members) + 1) / 2
    return float(u / (len(members) * len(non_members)))


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float) -> float:
    """Share of members caught by the strictest threshold that flags at most `fpr` of the non-members."""
    allowed = int(np.floor(fpr * len(non_members)))  # non-members allowed above the threshold
    threshold = np.sort(non_members)[::-1][allowed] if allowed < len(non_members) else -np.inf
    return float((members > threshold).mean())


def bootstrap_auc(members: np.ndarray, non_members: np.ndarray, rounds: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for the AUC, resampling members and non-members independently."""
    rng = np.random.default_rng(seed)
    aucs = [roc_auc(rng.choice(members, len(members)), rng.choice(non_members, len(non_members)))
            for _ in range(rounds)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class AttackResult:
    """How well one score separates members from non-members."""

    attack: str
    part: str  # the shipped part attacked: generator, solver, critic
    auc: float
    auc_interval: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    members: int
    non_members: int

    @classmethod
    def of(cls, attack: str, part: str, members: np.ndarray, non_members: np.ndarray, seed: int = 0
           ) -> AttackResult:
        low, high = bootstrap_auc(members, non_members, seed=seed)
        return cls(attack, part, roc_auc(members, non_members), (low, high),
                   *(tpr_at_fpr(members, non_members, fpr) for fpr in FALSE_POSITIVE_RATES),
                   len(members), len(non_members))


def nearest(queries: torch.Tensor, pool: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each query row to its nearest pool row, and that row's index."""
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start: start + chunk], pool)
        best = d.min(dim=1)
        distances.append(best.values)
        indices.append(best.indices)
    return torch.cat(distances), torch.cat(indices)


class FeatureSpace:
    """A fixed, randomly initialised convolutional trunk (seed FEATURE_SEED) with unit-length outputs."""

    def __init__(self, channels: int, image_size: int, width: int = 32):
        self.net, _ = conv_trunk(channels, image_size, width)
        dcgan_init_(self.net, torch.Generator().manual_seed(FEATURE_SEED))
        self.net.eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        parts = [F.normalize(self.net(to_unit_range(images[s: s + chunk])), dim=1)
                 for s in range(0, len(images), chunk)]
        return torch.cat(parts)


def pixels(images: torch.Tensor) -> torch.Tensor:
    return to_unit_range(images).flatten(1)


@dataclass
class AuditSets:
    """Real images of the audited classes, fitted to the memory, labelled with its labels."""

    members: tuple[torch.Tensor, torch.Tensor]
    non_members: tuple[torch.Tensor, torch.Tensor]
    reference: tuple[torch.Tensor, torch.Tensor] | None


def audit_sets(manifest: dict, members: ImageSet, non_members: ImageSet | str, reference: ImageSet | None,
               max_per_class: int, seed: int) -> AuditSets:
    """The members, non-members and reference images of the version's classes.

    Tasks that held images out (learn-task --holdout) have them removed from
    the members, after checking that `members` holds exactly the images the
    task saw; non_members=HOLDOUT audits against those held-out images.
    """
    g = manifest["generator"]
    names = {c["label"]: c["name"] for c in manifest["classes"]}
    by_name = {name: label for label, name in members.class_names.items()}
    trained, held = [], []
    for task in manifest["tasks"]:
        labels = [label for label in task["classes"] if names[label] in by_name]
        if not labels:
            continue
        task_images = members.select([by_name[names[label]] for label in task["classes"] if label in labels])
        record = (task.get("data") or {}).get("holdout")
        if record and len(labels) == len(task["classes"]):
            task_images, held_out = split_recorded(task_images, record, task["task"])
            held.append(held_out)
        elif non_members == HOLDOUT:
            raise DataError(f"task {task['task']} held no images out; learn it with --holdout, or name a "
                            f"--non-members source")
        trained.append(task_images)
    if not trained:
        raise DataError(f"{members.source} holds none of this memory's classes ({', '.join(names.values())})")

    def fitted(parts: list[ImageSet] | ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
        sets = parts if isinstance(parts, list) else [parts]
        images, labels = zip(*(images_of_classes(
            [label for label in names if names[label] in s.class_names.values()], names, s, g["channels"],
            g["image_size"]) for s in sets))
        return at_most_per_class(torch.cat(images), torch.cat(labels), max_per_class, seed)

    non = fitted(held if non_members == HOLDOUT else non_members)
    return AuditSets(fitted(trained), non, fitted(reference) if reference is not None else None)


def at_most_per_class(images: torch.Tensor, labels: torch.Tensor, count: int, seed: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random `count` images of each class (all of a class that has fewer)."""
    rng = torch.Generator().manual_seed(seed)
    keep = []
    for label in labels.unique():
        rows = torch.nonzero(labels == label).flatten()
        keep.append(rows[torch.randperm(len(rows), generator=rng)[:count]])
    rows = torch.sort(torch.cat(keep)).values
    return images[rows], labels[rows]


def audit(memory: Memory, members: ImageSet, non_members: ImageSet | str, reference: ImageSet | None = None,
          version: str | None = None, samples_per_class: int = 2000, max_per_class: int = 500, seed: int = 0,
          device: str | torch.device = "cpu") -> tuple[dict, bytes]:
    """Attack every part the version ships; returns the audit record and a PNG of the closest pairs."""
    manifest, files = memory.store.read(version)
    sets = audit_sets(manifest, members, non_members, reference, max_per_class, seed)
    common = sorted(set(sets.members[1].tolist()) & set(sets.non_members[1].tolist()))
    if not common:
        raise DataError("the members and non-members share no class of this memory; give images of the same classes")
    sets = AuditSets(*(None if s is None else only(s, common) for s in (sets.members, sets.non_members,
                                                                         sets.reference)))
    sampler = memory.sampler(manifest["version"], device, precision="float32")
    generated, generated_labels = sampler.sample({label: samples_per_class for label in common}, seed=seed)
    generated = generated.cpu()
    g = manifest["generator"]
    features = FeatureSpace(g["channels"], g["image_size"])
    results = []
    for space, embed in (("pixel", pixels), ("feature", features)):
        scores = [distance_scores(query, (generated, generated_labels), sets.reference, embed)
                  for query in (sets.members, sets.non_members)]
        name = f"nearest generated image, {space} distance" + (" (calibrated)" if sets.reference else "")
        results.append(AttackResult.of(name, "generator", *scores, seed=seed))
    if has_solver(manifest):
        solver = decode_solver(manifest, files)
        outputs = {label: i for i, label in enumerate(manifest["solver"]["classes"])}
        for name, score in solver_attacks(solver, outputs).items():
            results.append(AttackResult.of(name, "solver", *(score(*s) for s in (sets.members, sets.non_members)),
                                           seed=seed))
    critic = decode_shipped_critic(manifest, files)
    if critic is not None:
        score = lambda images, _: model_outputs(lambda x: critic(x)[0], images).numpy()  # noqa: E731
        results.append(AttackResult.of("real-or-fake score", "critic", score(*sets.members),
                                       score(*sets.non_members), seed=seed))
    copy = copy_rate((generated, generated_labels), sets.members, sets.reference or sets.non_members)
    record = {
        "version": manifest["version"],
        "version_manifest_sha256": manifest["manifest_sha256"],
        "solver": solver_mode(manifest),
        "classes": common,
        "members": len(sets.members[0]), "non_members": len(sets.non_members[0]),
        "reference": len(sets.reference[0]) if sets.reference else 0,
        "non_members_source": "held-out images (learn-task --holdout)" if non_members == HOLDOUT
        else non_members.source,
        "members_source": members.source,
        "settings": {"samples_per_class": samples_per_class, "max_per_class": max_per_class, "seed": seed,
                     "feature_space": f"random conv trunk, seed {FEATURE_SEED}", "bootstrap_rounds": 1000},
        "attacks": [asdict(r) for r in results],
        "worst_auc": max(r.auc for r in results),
        "copy_rate": copy,
    }
    return record, closest_pairs_png((generated, generated_labels), sets.members)


def only(labelled: tuple[torch.Tensor, torch.Tensor], classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.isin(labelled[1], torch.tensor(classes))
    return labelled[0][keep], labelled[1][keep]


def distance_scores(query: tuple[torch.Tensor, torch.Tensor], generated: tuple[torch.Tensor, torch.Tensor],
                    reference: tuple[torch.Tensor, torch.Tensor] | None,
                    embed: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Per query image: minus its distance to the nearest generated image of its class (+ the reference's)."""
    scores = torch.empty(len(query[0]))
    for label in query[1].unique():
        mine = query[1] == label
        q = embed(query[0][mine])
        score = -nearest(q, embed(generated[0][generated[1] == label]))[0]
        if reference is not None:
            score = score + nearest(q, embed(reference[0][reference[1] == label]))[0]
        scores[mine] = score
    return scores.numpy()


@torch.no_grad()
def model_outputs(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, chunk: int = 1024
                  ) -> torch.Tensor:
    return torch.cat([forward(to_unit_range(images[s: s + chunk])) for s in range(0, len(images), chunk)])


def solver_attacks(solver, outputs: dict[int, int]) -> dict[str, Callable]:
    """Scores from the stored solver: minus its loss on the true class, and its top confidence (label-free)."""
    def loss(images, labels):
        logits = model_outputs(solver, images)
        targets = torch.tensor([outputs[int(label)] for label in labels])
        return -F.cross_entropy(logits, targets, reduction="none").numpy()

    def confidence(images, _):
        return model_outputs(solver, images).softmax(1).max(1).values.numpy()

    return {"solver loss": loss, "solver confidence": confidence}


def copy_rate(generated: tuple[torch.Tensor, torch.Tensor], members: tuple[torch.Tensor, torch.Tensor],
              fresh: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Share of generated images closer to a training image of their class than 95 % of fresh real images are.

    A generator that draws new images like the data's own would score about
    COPY_QUANTILE; more means it reproduces training images.
    """
    copies, total = 0, 0
    for label in members[1].unique():
        pool = pixels(members[0][members[1] == label])
        fresh_distance = nearest(pixels(fresh[0][fresh[1] == label]), pool)[0]
        if len(fresh_distance) == 0:
            continue
        threshold = torch.quantile(fresh_distance, COPY_QUANTILE)
        mine = nearest(pixels(generated[0][generated[1] == label]), pool)[0]
        copies += int((mine < threshold).sum())
        total += len(mine)
    return {"rate": copies / max(total, 1), "expected_without_copying": COPY_QUANTILE, "generated": total}


def closest_pairs_png(generated: tuple[torch.Tensor, torch.Tensor], members: tuple[torch.Tensor, torch.Tensor],
                      count: int = 12) -> bytes:
    """The generated images closest to a training image (top row) above that training image (bottom row)."""
    best = []
    for label in members[1].unique():
        pool = members[0][members[1] == label]
        mine = generated[0][generated[1] == label]
        distance, index = nearest(pixels(mine), pixels(pool))
        best += [(float(d), mine[i], pool[j]) for i, (d, j) in enumerate(zip(distance, index))]
    best = sorted(best, key=lambda item: item[0])[:count]
    return grid_png([("generated", torch.stack([b[1] for b in best])),
                     ("nearest train", torch.stack([b[2] for b in best]))], scale=3)


def audit_card(record: dict) -> str:
    """The audit as Markdown, for people (stored beside the version with the record)."""
    lines = [f"# Membership-inference audit of version {record['version']}", "",
             f"{record['members']} members ({record['members_source']}) against {record['non_members']} "
             f"non-members ({record['non_members_source']}), classes {', '.join(map(str, record['classes']))}; "
             f"{record['settings']['samples_per_class']} generated images per class; solver `{record['solver']}`.",
             "", "| part | attack | AUC (95 % interval) | TPR at 1 % FPR | TPR at 0.1 % FPR |", "|---|---|---|---|---|"]
    for a in record["attacks"]:
        low, high = a["auc_interval"]
        lines.append(f"| {a['part']} | {a['attack']} | {a['auc']:.3f} ({low:.3f}-{high:.3f}) | "
                     f"{a['tpr_at_1pct_fpr']:.1%} | {a['tpr_at_0_1pct_fpr']:.1%} |")
    copy = record["copy_rate"]
    lines += ["", f"Copy rate: {copy['rate']:.2%} of {copy['generated']} generated images are closer to a training "
                  f"image than 95 % of fresh real images are ({copy['expected_without_copying']:.0%} expected "
                  f"without copying).", "",
              "AUC 0.5 and a TPR near the FPR mean the attack cannot tell members from non-members.", ""]
    return "\n".join(lines)
