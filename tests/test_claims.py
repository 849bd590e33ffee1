"""README's promises checked end to end, where a test of the parts alone would not catch them broken.

Each test drives the public path (Memory.learn_task, the protocol runner, a live server, ReplayClient and
ReplayStream) and observes what that path really did: the trained objects before saving, the version that
answered each request, the rows of real data that were read, the values the plasticity rules were called with.
"""

import threading
from dataclasses import replace

import httpx
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

import genmem.benchmarks.protocol as protocol
import genmem.memory
from genmem import plasticity
from genmem.artifact import decode_solver
from genmem.client import ReplayClient
from genmem.data import ImageSet
from genmem.learn import learn_task, to_unit_range
from genmem.memory import Memory
from genmem.nets import Generator
from genmem.replay import ReplayStream
from genmem.sampler import Sampler
from genmem.server.app import create_app

from test_server import real_server
from tiny import ARCHITECTURES, TINY_SIZE, publish, tiny_config, tiny_set, tiny_spec

TASKS = (["0", "1"], ["2"], ["3"])


def learn_tasks(path, tasks, variant="dgmw", arch="dcgan", class_norm=False) -> Memory:
    """A tiny memory that learned `tasks` in order, task t with seed t."""
    memory, data = Memory(path), tiny_set()
    for seed, classes in enumerate(tasks):
        memory.learn_task(data, classes, variant=variant, config=tiny_config(variant, arch, seed=seed),
                          image_size=TINY_SIZE, base_width=2, progress=False, arch=arch, class_norm=class_norm)
    return memory


@torch.no_grad()
def every_task_output(generator: Generator) -> list[torch.Tensor]:
    """Each task's images for the same 12 noise vectors, its classes taken in turn."""
    noise = torch.randn(12, generator.spec.noise_dim, generator=torch.Generator().manual_seed(7))
    return [generator(noise, task, torch.arange(len(noise)) % branch.num_classes)
            for task, branch in enumerate(generator.tasks)]


@torch.no_grad()
def class_logits(solver: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The solver's class scores, whether it is the critic (real-or-fake score, class scores) or a classifier."""
    out = solver(images)
    return out[1] if isinstance(out, tuple) else out


# Bit-identity across save and load -------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_trained_generator_and_solver_equal_their_reloaded_version_bit_for_bit(tmp_path, monkeypatch, variant,
                                                                                    architecture):
    probe = to_unit_range(tiny_set(per_class=3).images)
    trained = []  # per task, right after training and before anything is written: generator and solver outputs

    def learn_and_record(generator, *args, **kwargs):
        report = learn_task(generator, *args, **kwargs)
        trained.append((every_task_output(generator), class_logits(report.solver, probe)))
        return report

    monkeypatch.setattr(genmem.memory, "learn_task", learn_and_record)
    memory = learn_tasks(tmp_path / "m", TASKS[:2], variant, *architecture)
    assert len(trained) == 2
    assert memory.load()[0].spec.arch == architecture[0]
    for version, (generated, solved) in zip(memory.versions(), trained, strict=True):
        manifest, files = Memory(tmp_path / "m").store.read(version)
        reloaded = every_task_output(Memory(tmp_path / "m").load(version)[0])
        assert len(reloaded) == len(generated)
        for before, after in zip(generated, reloaded):
            assert torch.equal(before, after), f"{version}: a task's images changed between training and loading"
        assert torch.equal(class_logits(decode_solver(manifest, files), probe), solved), f"{version}: solver changed"


# A client keeps the version it connected to ----------------------------------------------------------------------

def test_clients_keep_their_version_and_a_request_in_flight_finishes_on_its_own(two_versions, tmp_path, monkeypatch):
    publish(two_versions / "versions" / "v0001", tmp_path / "m", "v0001")
    old = Memory(two_versions).sampler("v0001")
    started, release = threading.Event(), threading.Event()
    hold = {"armed": False}
    sample = Sampler.sample

    def held_sample(self, *args, **kwargs):
        """The server's sampling, stopped once (when armed) until the test releases it."""
        if hold["armed"]:
            hold["armed"] = False
            started.set()
            assert release.wait(60), "the test never released the held request"
        return sample(self, *args, **kwargs)

    answered = []  # the version that the server says produced each sample reply, to any client
    send = httpx.Client.send

    def send_and_note(self, request, **kwargs):
        reply = send(self, request, **kwargs)
        if request.url.path == "/genmem/sample":
            answered.append(reply.headers.get("x-genmem-version"))
        return reply

    monkeypatch.setattr(Sampler, "sample", held_sample)
    monkeypatch.setattr(httpx.Client, "send", send_and_note)
    with real_server(create_app(tmp_path / "m", watch_interval=0)) as url:
        stream = ReplayStream(url, batch_size=4, batches=4, seed=1)  # every class of the version it connects to
        local_stream = ReplayStream(old, batch_size=4, batches=4, seed=1)
        batches, expected = iter(stream), list(local_stream)
        first = next(batches)
        client = ReplayClient(url)

        in_flight = {}
        hold["armed"] = True
        request = threading.Thread(target=lambda: in_flight.setdefault("reply", httpx.post(
            f"{url}/genmem/sample", json={"total": 4, "seed": 9}, timeout=60)))
        request.start()
        assert started.wait(30), "the request never reached sampling"
        publish(two_versions / "versions" / "v0002", tmp_path / "m", "v0002")
        assert httpx.post(f"{url}/genmem/reload", timeout=60).json()["version"] == "v0002"
        assert httpx.get(f"{url}/genmem/info", timeout=60).json()["version"] == "v0002"
        release.set()
        request.join(60)
        reply = in_flight["reply"]
        assert reply.status_code == 200 and reply.headers["x-genmem-version"] == "v0001"
        assert reply.headers["x-genmem-labels"] == "0:2,1:2", "the classes of the version the request started on"
        images, labels = old.sample({0: 2, 1: 2}, seed=9)
        body = load_safetensors(reply.content)
        assert torch.equal(body["images"], images) and torch.equal(body["labels"], labels)

        assert client.version == "v0001" and [c.label for c in client.classes] == [0, 1]
        for got, want in zip(client.sample({0: 3, 1: 3}, seed=5), old.sample({0: 3, 1: 3}, seed=5)):
            assert torch.equal(got, want)
        rest = [first, *batches]
        assert len(rest) == len(expected)
        for (got_x, got_y), (want_x, want_y) in zip(rest, expected):
            assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y)
        assert len(answered) == 6 and set(answered) == {"v0001"}, f"replies came from {answered}"
        with ReplayClient(url) as late:  # not vacuous: the server did move on
            assert late.version == "v0002" and [c.label for c in late.classes] == [0, 1, 2]
        client.close()
        stream.replay.close()


# Determinism for a seed ------------------------------------------------------------------------------------------

def comparable(manifest: dict) -> dict:
    """A manifest without what records when and how fast it was made (the model card holds both too), nor the
    checksum of the manifest that holds them."""
    kept = {key: value for key, value in manifest.items() if key not in ("created", "manifest_sha256")}
    kept["tasks"] = [{key: value for key, value in task.items() if key != "seconds"} for task in manifest["tasks"]]
    kept["files"] = {name: entry for name, entry in manifest["files"].items() if name != "MODEL_CARD.md"}
    return kept


def test_the_same_seeds_give_the_same_memory_byte_for_byte_over_several_tasks(tmp_path):
    first, second = (learn_tasks(tmp_path / name, TASKS) for name in ("a", "b"))
    assert first.versions() == second.versions() == ["v0001", "v0002", "v0003"]
    for version in first.versions():
        (manifest_a, files_a), (manifest_b, files_b) = first.store.read(version), second.store.read(version)
        for name in ("generator.safetensors", "masks.safetensors", "solver.safetensors"):
            assert files_a[name] == files_b[name], f"{version}/{name} differs between two runs with the same seeds"
        assert comparable(manifest_a) == comparable(manifest_b)
    counts = {label: 5 for label in range(4)}
    for got, want in zip(first.sampler().sample(counts, seed=11), second.sampler().sample(counts, seed=11)):
        assert torch.equal(got, want)


# No real image of an earlier class is used -----------------------------------------------------------------------

class EarlierClassRead(AssertionError):
    """A real image of a class that an earlier task learned was read."""


class GuardedImages(torch.Tensor):
    """uint8 images that raise EarlierClassRead when a row of a forbidden class is read.

    Indexing reads the rows it selects and returns them still guarded (so do subsets of subsets); any other use
    of the pixels reads every row and returns a plain tensor. Shapes, dtypes and lengths are not pixels.
    """

    METADATA = {"__get__", "__len__", "size", "dim", "numel", "element_size", "is_floating_point", "stride"}

    @staticmethod
    def wrap(images: torch.Tensor, row_labels: torch.Tensor, forbidden: set[int]) -> "GuardedImages":
        guarded = images.as_subclass(GuardedImages)
        guarded.row_labels, guarded.forbidden = row_labels, forbidden
        return guarded

    @classmethod
    def of(cls, data: ImageSet, forbidden: set[int]) -> ImageSet:
        return ImageSet(cls.wrap(data.images, data.labels, forbidden), data.labels, data.class_names, data.source)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in cls.METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        rows = None
        for value in guarded_in([*args, *kwargs.values()]):
            indexed = func is torch.Tensor.__getitem__ and value is args[0]
            read = value.rows_read(args[1] if indexed else None)
            if indexed:
                rows = read
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        if rows is not None and rows.dim() == 1 and result.dim() >= 1 and len(result) == len(rows):
            return cls.wrap(result, rows, args[0].forbidden)  # a subset of the rows stays guarded
        return result

    def rows_read(self, index) -> torch.Tensor:
        """The labels of the rows `index` reads (all rows for None), after checking that none is forbidden."""
        first = index[0] if isinstance(index, tuple) else index
        read = self.row_labels if first is None or first is Ellipsis else self.row_labels[first]
        touched = set(torch.atleast_1d(read).tolist()) & self.forbidden
        if touched:
            raise EarlierClassRead(f"real images of earlier classes {sorted(touched)} were read")
        return read


def guarded_in(values):
    """The GuardedImages among an operation's arguments, also inside lists (torch.cat([...]))."""
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from guarded_in(value)
        elif isinstance(value, GuardedImages):
            yield value


def test_learning_tasks_never_reads_a_real_image_of_an_earlier_class(tmp_path):
    data, forbidden = tiny_set(), set()
    guarded = GuardedImages.of(data, forbidden)
    memory = Memory(tmp_path / "m")
    for seed, classes in enumerate(TASKS):
        memory.learn_task(guarded, classes, config=tiny_config(seed=seed), image_size=TINY_SIZE, base_width=2,
                          progress=False)
        forbidden.update(data.resolve(classes))
    assert memory.versions() == ["v0001", "v0002", "v0003"]
    with pytest.raises(EarlierClassRead, match=r"\[0, 1\]"):  # the guard itself works: it is not vacuous
        guarded.select([0, 1])


def test_the_protocol_s_dgm_methods_never_use_a_real_image_of_an_earlier_class(tmp_path, monkeypatch):
    """The whole run reads its training data through the guard: once task t starts, the classes of tasks before
    it are forbidden. Joint training (which may use them all) is left out."""
    learned: list[int] = []
    forbidden: set[int] = set()
    learn = Memory.learn_task

    def learn_next_task(self, data, classes, **kwargs):
        forbidden.update(learned)  # a new task starts: every class learned before it is now an earlier class
        learned.extend(data.resolve(classes))
        return learn(self, data, classes, **kwargs)

    monkeypatch.setattr(Memory, "learn_task", learn_next_task)
    profile = replace(protocol.PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5)
    train = GuardedImages.of(tiny_set(labels=(0, 1), size=32), forbidden)  # 32 px: used as they are, not resized
    results = protocol.run_protocol(train, tiny_set(labels=(0, 1), per_class=4), "mnist", "dgmw", profile,
                                    tmp_path / "run", progress=False, methods=protocol.DGM_METHODS)
    assert learned == [0, 1] and forbidden == {0}
    assert set(results["accuracy"]) == set(protocol.DGM_METHODS) and len(results["accuracy"]["dgm-replay"]) == 2


@pytest.mark.parametrize("methods, options", [(("hybrid",), {"hybrid_per_class": [2]}),
                                              (("buffer",), {"buffer_bytes": 2 * 3 * 1024})])
def test_buffer_and_hybrid_read_no_real_image_of_an_earlier_class_beyond_what_they_kept(tmp_path, monkeypatch,
                                                                                      methods, options):
    """The run's training data is read through the guard: once task t starts, the data set's images of the classes
    of tasks before it are forbidden. What buffer and hybrid keep of a class is copied while its task runs, only
    its budget's worth: hybrid its 2 per class, the buffer 6 images' bytes over the classes finished."""
    forbidden: set[int] = set()
    make_task = protocol._task

    def next_task(run, index):
        forbidden.update(run.classes[:index])
        return make_task(run, index)

    monkeypatch.setattr(protocol, "_task", next_task)
    profile = replace(protocol.PROFILES["smoke"], images_per_class=12, classifier_epochs=0.25, solver_steps=5,
                      critic_width=4, classifier_width=4)
    train = GuardedImages.of(tiny_set(labels=(0, 1, 2), size=32), forbidden)
    results = protocol.run_protocol(train, tiny_set(labels=(0, 1, 2), per_class=4), "mnist", "dgmw", profile,
                                    tmp_path / "run", progress=False, methods=methods, method_options=options,
                                    base_width=2)
    assert forbidden == {0, 1} and all(len(curve) == 3 for curve in results["accuracy"].values())
    (name,) = results["accuracy"]
    for task, per_class in enumerate(([6], [3, 3], [2, 2, 2]) if name == "buffer" else ([2], [2, 2], [2, 2, 2])):
        kept = load_file(tmp_path / "run" / "state" / f"task{task:02d}" / f"{name}.safetensors")
        assert {int(label): len(images) for label, images in kept.items()} == dict(enumerate(per_class))


# The training rules are applied by learn_task itself -------------------------------------------------------------

@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_learn_task_anneals_compensates_and_scales_the_sparsity_weight_as_written(monkeypatch, variant):
    """Spies on genmem.plasticity as learn_task calls it: the s of every batch's masks, the compensation of every
    embedding's gradient right before the optimiser uses it, and the weight the sparsity penalty enters the loss
    with (the gradient that reaches the penalty)."""
    epoch_scale, batch_scale = plasticity.epoch_scale, plasticity.batch_scale
    soft_mask, compensate, penalty_of = (plasticity.soft_mask, plasticity.compensate_embedding_gradient_,
                                         plasticity.sparsity_penalty)
    seen: dict[str, list] = {}  # what learn_task did in the current task
    compensated: dict[int, torch.Tensor] = {}  # embedding -> its gradient as compensation left it

    def soft_mask_spy(embedding, s):
        mask = soft_mask(embedding, s)
        seen["s"].append(s)
        seen["masks"].append(mask)
        return mask

    def compensate_spy(embedding, s, epoch_top):
        assert embedding.grad is not None, "compensation ran before the backward pass"
        before = embedding.grad.clone()
        compensate(embedding, s, epoch_top)
        factor = (epoch_top / s) * (torch.cosh(torch.clamp(s * embedding, -50, 50)) + 1) / (torch.cosh(embedding) + 1)
        assert torch.allclose(embedding.grad, before * factor, rtol=1e-5, atol=0)
        seen["compensated"].append((s, epoch_top))
        compensated[id(embedding)] = embedding.grad.clone()

    def penalty_spy(masks, reserved):
        assert all(a is b for a, b in zip(masks, seen["masks"][-len(masks):], strict=True)), \
            "the penalty must see this batch's soft masks"
        penalty = penalty_of(masks, reserved)
        penalty.register_hook(lambda grad: seen["weights"].append(float(grad)))
        return penalty

    def optimiser_sees_compensated_gradients(optimiser, args, kwargs):
        embeddings = [p for group in optimiser.param_groups for p in group["params"] if id(p) in compensated]
        for embedding in embeddings:
            assert torch.equal(embedding.grad, compensated[id(embedding)]), "the gradient changed after compensation"
        if embeddings:
            seen["steps_checked"].append(len(embeddings))
        compensated.clear()

    monkeypatch.setattr(plasticity, "soft_mask", soft_mask_spy)
    monkeypatch.setattr(plasticity, "compensate_embedding_gradient_", compensate_spy)
    monkeypatch.setattr(plasticity, "sparsity_penalty", penalty_spy)
    hook = register_optimizer_step_pre_hook(optimiser_sees_compensated_gradients)
    try:
        data, spec = tiny_set(labels=(0, 1), per_class=15), tiny_spec(variant)  # 15 images: a short last batch
        generator = Generator(spec)
        for task, label in enumerate((0, 1)):
            config = tiny_config(variant, epochs=3, seed=task)
            seen.update(s=[], masks=[], compensated=[], weights=[], steps_checked=[])
            mine = data.labels == label
            learn_task(generator, data.images[mine], torch.zeros(int(mine.sum()), dtype=torch.long), 1, config,
                       progress=False)

            n, layers = int(mine.sum()), len(spec.widths)
            tops = [epoch_scale(epoch, config.epochs, config.s_max) for epoch in range(config.epochs)]
            schedule = [(batch_scale(top, offset, n) if variant == "dgmw" else top, top)
                        for top in tops for offset in range(0, n, config.batch_size)]
            assert seen["s"] == [s for s, _ in schedule for _ in range(layers)], "masks not at the annealed s"
            assert seen["compensated"] == [pair for pair in schedule for _ in range(layers)], "compensated wrongly"
            assert seen["steps_checked"] == [layers] * len(schedule), "a generator step without compensation"
            growth = sum(generator.tasks[task].widths) / sum(spec.widths)
            assert (growth > 1) == (task > 0), "the second task must be learned on a grown network"
            assert seen["weights"] == pytest.approx([config.sparsity_weight * growth] * len(schedule), rel=1e-6)
    finally:
        hook.remove()
