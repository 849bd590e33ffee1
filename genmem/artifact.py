"""What one version of a memory holds, and how a generator is written to and rebuilt from it (FORMAT.md).

    generator.safetensors   every weight of the generator, named as in its state_dict
    masks.safetensors       each task's binary masks, bit-packed (uint8)
    MODEL_CARD.md           a short description for people
    manifest.json           architecture, classes, per-task history, checksums (written by the store)

Only safetensors and JSON are read back, so loading a version never executes code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load as load_safetensors

from genmem.canonical import save as save_safetensors
from genmem.errors import CorruptMemory, GenmemError, UnknownClass
from genmem.names import label_number, shown
from genmem.nets import Classifier, Discriminator, Generator, GeneratorSpec, mask_shapes

FORMAT = "genmem.memory"
FORMAT_VERSION = 2  # 2: the solver ships without the critic's real-or-fake head, and may be absent
GENERATOR_FORMAT_VERSION = 3  # 3: the generator has an architecture or class-conditional norms (format_version)
READABLE_FORMAT_VERSIONS = (1, 2, 3)
WEIGHTS_FILE = "generator.safetensors"
MASKS_FILE = "masks.safetensors"
CARD_FILE = "MODEL_CARD.md"
SAMPLES_FILE = "samples.png"  # one row of samples per class, for people
SOLVER_FILE = "solver.safetensors"


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 entries per byte in C order, most significant bit first, zero padded."""
    return torch.from_numpy(np.packbits(mask.detach().cpu().numpy().reshape(-1)))


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    count = int(np.prod(shape))
    if packed.dtype != torch.uint8 or packed.numel() != -(-count // 8):
        raise CorruptMemory(f"a packed mask holds {packed.numel()} bytes, expected {-(-count // 8)} for shape {shape}")
    bits = np.unpackbits(packed.numpy(), count=count)
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


def format_version(spec: GeneratorSpec) -> int:
    """The format a version of this generator is written in: 2 where a format 2 reader rebuilds it (a DCGAN with
    plain BatchNorms), 3 where it needs the manifest's `arch` or `class_norm`, so that an older genmem says to
    upgrade rather than failing to rebuild it."""
    return FORMAT_VERSION if (spec.arch, spec.class_norm) == ("dcgan", False) else GENERATOR_FORMAT_VERSION


def encode_generator(generator: Generator) -> dict[str, bytes]:
    """The generator's weight and mask files."""
    weights = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    masks = {f"task{t}.layer{l}": pack_bits(mask)
             for t, task in enumerate(generator.tasks) for l, mask in enumerate(task.masks)}
    meta = {"format": FORMAT, "format_version": str(format_version(generator.spec))}
    return {
        WEIGHTS_FILE: save_safetensors(weights, metadata={**meta, "content": "generator weights"}),
        MASKS_FILE: save_safetensors(masks, metadata={**meta, "content": "bit-packed task masks",
                                                      "bit_order": "C order, most significant bit first"}),
    }


def encode_solver(solver: Classifier) -> bytes:
    """The task solver (trunk and class head only); its class order is the manifest's `solver.classes`."""
    weights = {name: t.detach().cpu().contiguous() for name, t in solver.state_dict().items()}
    return save_safetensors(weights, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                               "content": "task solver (classifier: trunk and class head)"})


def has_solver(manifest: dict) -> bool:
    """Whether a version ships a solver (`--solver none` stores none)."""
    return manifest.get("solver") is not None and manifest["solver"].get("mode") != "none"


def solver_mode(manifest: dict) -> str:
    """real, replay or none; format 1 versions stored the real solver with the critic's real-or-fake head."""
    return (manifest.get("solver") or {}).get("mode", "real")


def _solver_weights(manifest: dict, files: dict[str, bytes]) -> dict[str, torch.Tensor]:
    if not has_solver(manifest):
        raise GenmemError(f"version {manifest.get('version')} stores no solver (it was learned with --solver none)")
    try:
        return load_safetensors(files[SOLVER_FILE])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CorruptMemory(f"the solver of version {manifest.get('version')} cannot be read: {exc}") from exc


def decode_solver(manifest: dict, files: dict[str, bytes]) -> Classifier:
    """The version's solver, in eval mode; output i is the class manifest["solver"]["classes"][i].

    A format 1 version also holds the critic's real-or-fake head (`critic.*`); it is left out here.
    """
    weights = {k: v for k, v in _solver_weights(manifest, files).items() if not k.startswith("critic.")}
    return _solver_network(Classifier, weights, manifest)


def decode_shipped_critic(manifest: dict, files: dict[str, bytes]) -> Discriminator | None:
    """The critic with its real-or-fake head where an older (format 1) version ships it, else None (for audits)."""
    if not has_solver(manifest):
        return None
    weights = _solver_weights(manifest, files)
    if not any(k.startswith("critic.") for k in weights):
        return None
    return _solver_network(Discriminator, weights, manifest)


def _solver_network(kind: type, weights: dict[str, torch.Tensor], manifest: dict):
    """A Classifier or Discriminator shaped by the manifest, holding `weights`, in eval mode."""
    g, solver = manifest["generator"], manifest["solver"]
    try:
        model = kind(g["channels"], g["image_size"], len(solver["classes"]), solver["width"])
        model.load_state_dict(weights, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CorruptMemory(f"the solver of version {manifest.get('version')} does not match its manifest: {exc}") \
            from exc
    return model.eval()


def spec_from_manifest(manifest: dict) -> GeneratorSpec:
    """The generator's spec; manifests written before the residual generator (§15) have no `arch` (a DCGAN) and
    none before class-conditional norms (§16) `class_norm` (off)."""
    g = manifest["generator"]
    return GeneratorSpec(g["variant"], g["channels"], g["image_size"], g["noise_dim"], tuple(g["initial_widths"]),
                         g.get("arch", "dcgan"), bool(g.get("class_norm", False)))


def decode_generator(manifest: dict, files: dict[str, bytes]) -> Generator:
    """Rebuild the generator of a verified version: skeleton from the manifest, tensors from safetensors."""
    if manifest.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise CorruptMemory(f"version {manifest.get('version')} has format version {manifest.get('format_version')!r}; "
                            f"this genmem reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))} (upgrade genmem)")
    try:
        spec = spec_from_manifest(manifest)
        tasks = manifest["tasks"]
        weights = load_safetensors(files[WEIGHTS_FILE])
        masks = load_safetensors(files[MASKS_FILE])
        generator = Generator(spec)
        generator.grow(tuple(tasks[-1]["widths"]), torch.Generator())
        for t, task in enumerate(tasks):
            widths = tuple(task["widths"])
            layers = generator.task_layers(widths, len(task["classes"]))
            layers.set_masks([unpack_bits(masks[f"task{t}.layer{l}"], shape)
                              for l, shape in enumerate(mask_shapes(spec, widths))])
            generator.tasks.append(layers)
        generator.load_state_dict(weights, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CorruptMemory(f"version {manifest.get('version')} does not match its manifest: {exc}") from exc
    return generator.eval()


@dataclass(frozen=True)
class ClassInfo:
    label: int  # the data set's label, what a classifier trained on replay predicts
    name: str
    task: int
    index: int  # position within its task, the generator's condition


class ClassTable:
    """The classes of a memory, found by label or by name."""

    def __init__(self, classes: list[ClassInfo]):
        self.classes = classes
        self._by_label = {c.label: c for c in classes}
        self._by_name = {c.name: c for c in classes}

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ClassTable":
        return cls([ClassInfo(c["label"], c["name"], c["task"], c["index"]) for c in manifest["classes"]])

    def __iter__(self):
        return iter(self.classes)

    def __len__(self):
        return len(self.classes)

    def __contains__(self, key) -> bool:
        return self.find(key) is not None

    def find(self, key: int | str) -> ClassInfo | None:
        """The class a key names: its name first, else its label (an int, or ASCII digits only; see names.py)."""
        if not isinstance(key, int) and str(key).strip() in self._by_name:
            return self._by_name[str(key).strip()]
        label = label_number(key)
        return self._by_label.get(label) if label is not None else None

    def resolve(self, key: int | str) -> ClassInfo:
        found = self.find(key)
        if found is None:
            raise UnknownClass(f"this memory has no class {shown(key)}; it holds {self.describe()}")
        return found

    def describe(self) -> str:
        return ", ".join(c.name if c.name == str(c.label) else f"{c.label} ({c.name})" for c in self.classes) or "none"


def privacy_card(manifest: dict) -> list[str]:
    """The model card's privacy section: what the solver saw, each task's DP guarantee, what was held out."""
    solver = manifest.get("solver") or {}
    lines = ["## Privacy", "",
             f"- solver: `{solver_mode(manifest)}`: {solver.get('about', 'the critic with its class head')}",
             "- the GAN's critic, the one part that read the real images directly, is not stored"]
    for task in manifest["tasks"]:
        dp, held = task.get("privacy"), (task.get("data") or {}).get("holdout")
        if dp:
            lines.append(f"- task {task['task']}: ({dp['epsilon']:.2f}, {dp['delta']:g})-differentially private "
                         f"with respect to its {dp['images']} training images (DP-SGD on the critic: noise "
                         f"multiplier {dp['noise_multiplier']:.3f}, clipping norm {dp['max_grad_norm']:g}, sample "
                         f"rate {dp['sample_rate']:.4f}, {dp['steps']} steps, {dp['accountant']}); see PRIVACY.md")
        else:
            lines.append(f"- task {task['task']}: no differential-privacy guarantee")
        if held:
            lines.append(f"  - {held['count']} of its images ({held['fraction']:.0%}) were held out of training "
                         f"for membership audits (`genmem audit`)")
    return lines


def replay_quality(manifest: dict) -> list[dict]:
    """Per class, the replay quality measured when it was learned (genmem.learned_quality); older versions: none."""
    classes = ClassTable.from_manifest(manifest)
    return [{"label": int(label), "name": classes.resolve(int(label)).name, "task": task["task"], **figures}
            for task in manifest["tasks"] for label, figures in task.get("quality", {}).items()]


def quality_card(manifest: dict) -> list[str]:
    """The model card's replay-quality table and sample strip, when the version has them."""
    rows = replay_quality(manifest)
    if not rows:
        return []
    lines = ["", "Replay quality, measured when each class was learned: *recognised* is the share of 64 generated "
                 "images that the solver puts in their class, *diversity* their mean pairwise distance over that of "
                 "as many real training images (1.0: as varied as the real class).", "",
             "| class | task | recognised (%) | diversity |", "|---|---|---|---|"]
    lines += [f"| {row['name']} | {row['task']} | {_figure(row['recognised'], '.1f')} | "
              f"{_figure(row['diversity'], '.2f')} |" for row in rows]
    return lines + ["", f"![one row of samples per class, drawn when the version was written]({SAMPLES_FILE})"]


def _figure(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _architecture(generator: dict) -> str:
    """The generator's architecture in words, from the manifest (absent before architectures: a DCGAN)."""
    words = {"dcgan": "DCGAN", "resnet": "residual stages"}[generator.get("arch", "dcgan")]
    return words + (", class-conditional BatchNorms" if generator.get("class_norm") else "")


def model_card(manifest: dict) -> str:
    """A short human description of a version, written next to its weights."""
    g = manifest["generator"]
    classes = ClassTable.from_manifest(manifest)
    lines = [
        f"# genmem memory, version {manifest['version']}",
        "",
        f"A {g['variant'].upper()} generative memory (Dynamic Generative Memory, Ostapenko et al., CVPR 2019): a "
        f"class-conditional GAN generator ({_architecture(g)}) of {g['channels']}x{g['image_size']}x{g['image_size']} "
        f"images that learned {len(manifest['tasks'])} task(s) one after another without forgetting earlier ones.",
        "",
        f"- classes: {classes.describe()}",
        f"- parent version: {manifest.get('parent') or 'none (first task)'}",
        f"- created: {manifest['created']} with genmem {manifest['genmem_version']}",
        "- no training image is stored: replay of old classes comes from the generator alone",
        "",
        "| task | classes | widths | data | epochs | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for task in manifest["tasks"]:
        names = ", ".join(classes.resolve(label).name for label in task["classes"])
        processes = task["training"].get("processes", 1)  # absent before it was recorded: one
        shared = f" on {processes} processes" if processes > 1 else ""
        lines.append(f"| {task['task']} | {names} | {'/'.join(map(str, task['widths']))} | "
                     f"{task['data']['source']} ({task['data']['images']} images) | {task['training']['epochs']} | "
                     f"{task['seconds']:.0f}{shared} |")
    lines += quality_card(manifest)
    lines += ["", *privacy_card(manifest), "",
              "Load it with `genmem.Memory(path).sampler()` or serve it with `genmem serve`; "
              "the files are safetensors and JSON, so loading never executes code.", ""]
    return "\n".join(lines)

