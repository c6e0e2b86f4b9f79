"""The pipeline config of ``dnmf run``: a YAML file, validated, with ``--set`` overrides.

A config names the pipeline folder (``store``), the audio folder (``input``)
and one section per stage; every section is validated by pydantic with
``extra="forbid"``, so a misspelt key is an error that names the key and the
keys allowed there, and a bad value names the key and the values allowed::

    store: recordings.dnmf          # corpus.zarr, model.zarr, activations.zarr, runs.zarr
    input: recordings/              # folder of audio, searched recursively
    ingest: {sr: 22050, n_fft: 2048, hop_length: 512}
    learn: {rank: 64, beta: kullback-leibler, epochs: 200, refine_epochs: 5}
    export: {iter: 200, tol: 1.0e-4, reexport_threshold: 0.05}
    cluster: {kind: local, workers: 4}

Relative paths are taken from the working directory, as on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dnmf.audio.features import FeatureConfig
from dnmf.errors import DnmfPathError, DnmfUsageError
from dnmf.nmf.config import LearnConfig

__all__ = [
    "ClusterSection",
    "ExportSection",
    "IngestSection",
    "LearnSection",
    "PipelineConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSection(FeatureConfig):
    """:class:`dnmf.audio.features.FeatureConfig` (librosa's names) and the chunking of ``V``."""

    chunk_frames: int | None = Field(None, gt=0)

    def features_config(self) -> FeatureConfig:
        return FeatureConfig(**self.model_dump(exclude={"chunk_frames"}))


class LearnSection(LearnConfig):
    """:class:`dnmf.nmf.config.LearnConfig` (any ``lags``, every init but a given
    dictionary), and how a grown corpus refines the dictionary.

    ``refine_epochs`` passes over the whole corpus (old and new frames) start
    from the current dictionary when new files were ingested.
    """

    init: Literal["random", "nndsvda", "kmeans", "uniform", "pitched", "drums"] = "nndsvda"  # type: ignore[assignment]
    refine_epochs: int = Field(5, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_init(cls, values: Any) -> Any:
        """No ``init``: the one ``dnmf learn`` takes for this β (``default_init``)."""
        if not isinstance(values, dict) or values.get("init") is not None:
            return values
        from dnmf.nmf.init import default_init

        return {**values, "init": default_init(values.get("beta"))}

    def learn_config(self) -> LearnConfig:
        """The config of a learn from scratch."""
        return LearnConfig(**self.model_dump(exclude={"refine_epochs"}))

    def refine_config(self) -> LearnConfig:
        """The config of a refinement: ``refine_epochs`` from the current dictionary."""
        d = self.model_dump(exclude={"refine_epochs"})
        d.update(init="custom", epochs=self.refine_epochs)  # few passes: no sample stages
        return LearnConfig(**d)


class ExportSection(_Section):
    """Activations of every corpus frame (``dnmf export``)."""

    enabled: bool = True
    iter: int = Field(200, gt=0)
    tol: float = Field(1e-4, ge=0.0)
    reexport_threshold: float = Field(0.05, ge=0.0)
    """Relative change ``|W_new - W_old|_F / |W_old|_F`` of a refined dictionary above
    which every frame is exported again; at or below it only new frames are."""


class PlotSection(_Section):
    """PNGs of the dictionary, the loss and one file's activations (``dnmf plot``)."""

    enabled: bool = True
    out: str = "plots"
    """Folder, relative to the pipeline folder (``store``) unless absolute."""
    file: str | None = None


class SeparateSection(_Section):
    """Source separation of some files with the learned model (``dnmf separate``)."""

    enabled: bool = True
    inputs: list[str] = Field(min_length=1)
    out: str = "parts"
    """Folder, relative to the pipeline folder (``store``) unless absolute."""
    groups: dict[str, str] | None = None
    """Named groups of components, e.g. ``{drums: "0-3", bass: "4,5"}``."""
    alpha: float = Field(1.0, gt=0.0)


class SynthesizeSection(_Section):
    """Write the synthetic demo corpus into ``input`` when that folder does not exist."""

    n_files: int = Field(6, gt=0)
    seconds: float = Field(20.0, ge=1.0)
    seed: int = Field(0, ge=0)


ClusterKind = Literal["local", "address", "slurm", "pbs", "kubernetes"]


class ClusterSection(_Section):
    """Where the tasks run.

    ``local``: a LocalCluster of ``workers`` processes on this machine;
    ``address``: a running scheduler at ``address``; ``slurm``, ``pbs``:
    dask-jobqueue's SLURMCluster / PBSCluster with ``options`` (cores, memory,
    queue, walltime, ...) scaled to ``workers`` workers; ``kubernetes``:
    dask-kubernetes' KubeCluster with ``options`` and ``workers`` workers.
    """

    kind: ClusterKind = "local"
    workers: int | None = Field(None, gt=0)
    address: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSection:
        if self.kind == "address" and not self.address:
            raise ValueError("cluster.kind=address needs cluster.address, e.g. tcp://10.0.0.5:8786")
        if self.kind != "address" and self.address:
            raise ValueError(
                f"cluster.address is only for cluster.kind=address, not {self.kind}; "
                "remove it or set kind: address"
            )
        if self.kind in ("local", "address") and self.options:
            raise ValueError(
                f"cluster.options are for slurm, pbs and kubernetes, not {self.kind}; remove them"
            )
        if self.kind == "address" and self.workers is not None:
            raise ValueError(
                "cluster.workers cannot size a running cluster (kind: address); remove it"
            )
        return self


class LockSection(_Section):
    """The run lock: how often a run says it is alive, and when its lock counts as stale."""

    heartbeat_seconds: float = Field(10.0, gt=0.0)
    stale_after_seconds: float = Field(300.0, gt=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> LockSection:
        if self.stale_after_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                f"lock.stale_after_seconds={self.stale_after_seconds:g} must exceed twice "
                f"lock.heartbeat_seconds={self.heartbeat_seconds:g}; raise it"
            )
        return self


class PipelineConfig(_Section):
    """A whole ``dnmf run`` config (see the module docstring)."""

    store: str = Field(min_length=1)
    input: str = Field(min_length=1)
    synthesize: SynthesizeSection | None = None
    ingest: IngestSection = Field(default_factory=IngestSection)
    learn: LearnSection
    export: ExportSection = Field(default_factory=ExportSection)
    plot: PlotSection | None = None
    separate: SeparateSection | None = None
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    lock: LockSection = Field(default_factory=LockSection)

    # -- the pipeline folder ----------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.store)

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.zarr"

    @property
    def model_path(self) -> Path:
        return self.root / "model.zarr"

    @property
    def staging_path(self) -> Path:
        """Where a model is learned before it replaces ``model.zarr`` whole."""
        return self.root / "model.next.zarr"

    @property
    def activations_path(self) -> Path:
        return self.root / "activations.zarr"

    @property
    def runs_path(self) -> Path:
        return self.root / "runs.zarr"

    @property
    def lock_path(self) -> Path:
        return self.root / "run.lock"

    def under_root(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p


# -- loading --------------------------------------------------------------------------
def load_config(
    path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()
) -> PipelineConfig:
    """Read, override and validate a config file; a mistake is one sentence naming the key.

    Examples
    --------
    >>> cfg = load_config("configs/demo.yaml", ["learn.rank=8"])  # doctest: +SKIP
    >>> cfg.learn.rank  # doctest: +SKIP
    8
    """
    p = Path(path)
    if p.is_dir():
        raise DnmfPathError(
            f"config {str(path)!r} is a folder, not a config file; pass a YAML file such as "
            "configs/demo.yaml"
        )
    if not p.is_file():
        raise DnmfPathError(f"config {str(path)!r} does not exist; pass a YAML config file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise DnmfUsageError(
            f"config {str(path)!r} is not valid YAML{at} ({problem}); fix the file"
        ) from None
    except UnicodeDecodeError:
        raise DnmfUsageError(f"config {str(path)!r} is not UTF-8 text; pass a YAML file") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DnmfUsageError(
            f"config {str(path)!r} holds a {type(raw).__name__}, not a mapping of keys; "
            f"start it with keys such as 'store:' and 'learn:'"
        )
    try:
        return parse_config(apply_overrides(raw, overrides), source=str(path))
    except ConfigError as exc:  # a key that --set gave is the --set's mistake, not the file's
        culprit = _override_at(exc.key, overrides)
        if culprit is None:
            raise
        raise ConfigError(f"--set {culprit!r}", exc.key, exc.sentence) from None


def _override_at(key: str | None, overrides: list[str] | tuple[str, ...]) -> str | None:
    """The last ``--set`` that set ``key`` (or a section above or a key below it), if any."""
    if not key:
        return None
    for item in reversed(overrides):
        name = item.partition("=")[0].strip()
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            return item
    return None


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``raw`` with each ``dotted.key=value`` set (the value read as YAML: 32, true, [1, 2])."""
    import copy

    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise DnmfUsageError(f"--set {item!r} is not key=value; pass e.g. --set learn.rank=32")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise DnmfUsageError(
                    f"--set {item!r}: {where} is a value, not a section of keys; "
                    f"set {where}=VALUE instead"
                )
            node = child
        node[parts[-1]] = value
    return out


class ConfigError(DnmfUsageError):
    """A config value is wrong: ``"SOURCE: SENTENCE"``, SOURCE the file or the ``--set``."""

    def __init__(self, source: str, key: str, sentence: str) -> None:
        super().__init__(f"{source}: {sentence}")
        self.key = key
        self.sentence = sentence


def parse_config(raw: dict[str, Any], *, source: str = "config") -> PipelineConfig:
    """Validate a config mapping; errors become one sentence naming the key and what is allowed."""
    try:
        return PipelineConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(source, _error_key(exc), describe(exc)) from None
    except TypeError as exc:  # keys that are not strings
        raise DnmfUsageError(f"{source}: {exc}; config keys must be names") from None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (None past a plain value)."""
    model: type[BaseModel] = PipelineConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nxt is None:
            return None
        model = nxt
    return model


def _keys_of(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _first_error(exc: ValidationError) -> Any:
    errors = exc.errors()
    # A misspelt key also leaves the right one missing: name the misspelling first.
    return next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])


def _error_key(exc: ValidationError) -> str:
    """The dotted key of the error :func:`describe` names."""
    return ".".join(str(p) for p in _first_error(exc).get("loc", ()))


def describe(exc: ValidationError) -> str:
    """One sentence for the first error: the key, the value, and what is allowed."""
    err = _first_error(exc)
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc)
    kind = err.get("type", "")
    msg = str(err.get("msg", "is invalid"))
    value = err.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        section = ".".join(str(p) for p in loc[:-1])
        allowed = f"; the keys of {section} are: " if section else "; the top-level keys are: "
        return f"unknown key {key!r}" + (allowed + _keys_of(owner) if owner else "")
    if kind == "missing":
        owner = _model_at(loc)
        field = owner.model_fields.get(str(loc[-1])) if owner else None
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"the key {key!r} is required{what}; add it"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        owner = _model_at((*loc, "_"))
        keys = f" with the keys {_keys_of(owner)}" if owner else ""
        return f"{key}={value!r} must be a section of keys{keys}"
    if msg.startswith("Value error, "):
        text = msg.removeprefix("Value error, ")
        if not key or text.startswith(f"{key}.") or text.startswith(f"{key}="):
            return text
        if text.startswith(f"{loc[-1]}="):  # "beta='x' is ..." -> "learn.beta='x' is ..."
            return f"{key}{text[len(str(loc[-1])) :]}"
        return f"{key}: {text}"
    if loc and loc[-1] == "norm" and kind == "literal_error":
        return f"{key}={value!r} is not a normalisation; use l2, max or none"
    return f"{key}={value!r} is invalid: {msg[0].lower()}{msg[1:]}"
