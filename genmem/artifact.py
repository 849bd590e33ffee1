"""What one version of a memory holds, and how a generator is written to and rebuilt from it (FORMAT.md).

    generator.safetensors   every weight of the generator, named as in its state_dict
    masks.safetensors       each task's binary masks, bit-packed (uint8)
    solver.safetensors      the task solver (not needed to sample: replay needs the two files above)
    MODEL_CARD.md           a short description for people
    manifest.json           architecture, classes, per-task history, checksums (written by the store)

Only safetensors and JSON are read back, so loading a version never executes code.

A task that stores its weights in half precision (TrainingConfig.storage_dtype, docs/ALGORITHM.md §19) rounds
what it may change onto the half grid as it ends (`round_for_storage_`), so the weights it stores in that type are
exactly those it and every later task compute with; such a version is written in format 4, its tensors compressed
(genmem.compressed). A tensor that is not exactly representable (one an earlier float32 task reserved, say) is
stored as float32, so writing never changes a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from genmem import compressed, config
from genmem.canonical import save as save_safetensors
from genmem.errors import CorruptMemory, GenmemError, UnknownClass
from genmem.names import label_number, shown
from genmem.nets import Classifier, Discriminator, Generator, GeneratorSpec, mask_shapes

FORMAT = "genmem.memory"
FORMAT_VERSION = 2  # 2: the solver ships without the critic's real-or-fake head, and may be absent
GENERATOR_FORMAT_VERSION = 3  # 3: the generator has an architecture or class-conditional norms (format_version)
COMPRESSED_FORMAT_VERSION = 4  # 4: the generator's tensors are compressed, in half precision where exact
READABLE_FORMAT_VERSIONS = (1, 2, 3, 4)
# The types a task's generator weights may be stored in (TrainingConfig.storage_dtype); float32 rounds nothing.
STORAGE_DTYPES = {name: getattr(torch, name) for name in config.STORAGE_DTYPES}
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


def task_storage_dtype(task: dict) -> str:
    """The type a manifest's task stored its generator weights in: float32 for a task written before there was a
    choice (formats 1 to 3)."""
    return task["training"].get("storage_dtype", "float32")


def format_version(spec: GeneratorSpec, storage: str = "float32") -> int:
    """The format a version of this generator is written in: 4 where its tasks store half precision (`storage`,
    the last task's TrainingConfig.storage_dtype); else 2 where a format 2 reader rebuilds it (a DCGAN with plain
    BatchNorms), 3 where it needs the manifest's `arch` or `class_norm`, so that an older genmem says to upgrade
    rather than failing to rebuild it."""
    if storage != "float32":
        return COMPRESSED_FORMAT_VERSION
    return FORMAT_VERSION if (spec.arch, spec.class_norm) == ("dcgan", False) else GENERATOR_FORMAT_VERSION


@torch.no_grad()
def round_for_storage_(generator: Generator, task: int, frozen: list[torch.Tensor], storage: str) -> None:
    """Round what task `task` could change onto the grid of the `storage` type, in place: the shared weight entries
    it was free to train (`frozen`: per masked layer, the entries earlier tasks reserved) and every float tensor of
    its private layers. Entries earlier tasks reserved are left as they are, whatever type they were stored in, so
    rounding keeps their tasks bit-identical (§12); a value beyond the type's range stays float32."""
    dtype = STORAGE_DTYPES[storage]
    if dtype == torch.float32:
        return
    for layer, keep in zip(generator.layers, frozen, strict=True):
        _round_(layer.weight, dtype, ~keep.expand_as(layer.weight))
    for tensor in generator.tasks[task].state_dict().values():  # the parameters and buffers themselves
        if tensor.is_floating_point():
            _round_(tensor, dtype, torch.ones_like(tensor, dtype=torch.bool))


def _round_(tensor: torch.Tensor, dtype: torch.dtype, where: torch.Tensor) -> None:
    """Round the entries `where` is true to the nearest value of `dtype` (ties to even), keeping float32 storage."""
    rounded = tensor.to(dtype).to(tensor.dtype)
    fits = rounded.isfinite() | ~tensor.isfinite()  # an overflow would be damage: that entry stays as it is
    tensor.copy_(torch.where(where & fits, rounded, tensor))


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor in `dtype` if that holds every one of its values exactly, else unchanged."""
    if not tensor.is_floating_point() or tensor.dtype == dtype:
        return tensor
    narrow = tensor.to(dtype)
    return narrow if torch.equal(narrow.to(tensor.dtype), tensor) else tensor


def encode_generator(generator: Generator, storage: str = "float32") -> dict[str, bytes]:
    """The generator's weight and mask files. `storage`: the type its last task rounded to (round_for_storage_);
    float32 writes them as formats 2 and 3 did, anything else in format 4: each tensor in that type where it holds
    it exactly (float32 otherwise), every tensor compressed."""
    weights = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    masks = {f"task{t}.layer{l}": pack_bits(mask)
             for t, task in enumerate(generator.tasks) for l, mask in enumerate(task.masks)}
    meta = {"format": FORMAT, "format_version": str(format_version(generator.spec, storage))}
    save = save_safetensors
    if storage != "float32":
        weights = {name: _stored(t, STORAGE_DTYPES[storage]) for name, t in weights.items()}
        save = compressed.save
    return {
        WEIGHTS_FILE: save(weights, metadata={**meta, "content": "generator weights"}),
        MASKS_FILE: save(masks, metadata={**meta, "content": "bit-packed task masks",
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
    """Rebuild the generator of a verified version: skeleton from the manifest, tensors from safetensors (float32,
    whatever type they were stored in)."""
    if manifest.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise CorruptMemory(f"version {manifest.get('version')} has format version {manifest.get('format_version')!r}; "
                            f"this genmem reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))} (upgrade genmem)")
    weights = {name: t.float() if t.is_floating_point() else t
               for name, t in _read_tensors(manifest, files, WEIGHTS_FILE).items()}
    masks = _read_tensors(manifest, files, MASKS_FILE)
    try:
        spec = spec_from_manifest(manifest)
        tasks = manifest["tasks"]
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


def _read_tensors(manifest: dict, files: dict[str, bytes], name: str) -> dict[str, torch.Tensor]:
    """The tensors of one of a version's files, decompressed where it is compressed (format 4)."""
    try:
        return compressed.load(files[name], manifest["format_version"] == COMPRESSED_FORMAT_VERSION)
    except (SafetensorError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CorruptMemory(f"{name} of version {manifest.get('version')} cannot be read (damaged): {exc}") from exc


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

