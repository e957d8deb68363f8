"""Typed configuration schema. Every field has a type, so a misspelled key or a wrong type fails
at composition time; values that depend on each other are checked in ``validate.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class Task(str, Enum):
    transformer = "transformer"
    tokenizer = "tokenizer"


class TokenizerKind(str, Enum):
    bsq = "bsq"  # the learned CNN autoencoder with multi-scale BSQ (Infinity's tokenizer)
    pca = "pca"  # a fitted linear stand-in: whitened patch PCA + the same quantizer + a least-squares decoder


class Strategy(str, Enum):
    single = "single"
    ddp = "ddp"
    fsdp = "fsdp"
    hsdp = "hsdp"
    deepspeed = "deepspeed"


class Checkpointing(str, Enum):
    off = "off"
    full = "full"
    selective = "selective"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on GPU, fp32 on CPU
    bf16 = "bf16"
    fp32 = "fp32"


class Attention(str, Enum):
    auto = "auto"
    sdpa = "sdpa"
    flex = "flex"
    flash = "flash"


class InputResampling(str, Enum):
    bilinear = "bilinear"  # the release's ('trilinear' on (B, d, 1, H, W))
    area = "area"


class ScheduleName(str, Enum):
    wsd = "wsd"  # warmup, stable, decay (cooldown): the default for scaling sweeps
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class DataSource(str, Enum):
    synthetic = "synthetic"
    webdataset = "webdataset"
    cached = "cached"


class ClusterKind(str, Enum):
    local = "local"
    slurm = "slurm"


@dataclass
class TextEncoderConfig:
    name: str = "minilm"  # a known encoder (flan-t5-xl, minilm, tiny-t5, ...) or "auto" with `path`
    path: Optional[str] = None  # local directory; hub names resolve from the local cache only
    dim: Optional[int] = None  # None: taken from the known-encoder table
    max_length: Optional[int] = None  # None: taken from the known-encoder table
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU


@dataclass
class SelfCorrectionConfig:
    prob: float = 0.3  # bit-flip strength drawn from U{0, 0.01, ..., prob}; 0 = plain teacher forcing
    num_scales: int = 13
    per_sample_strength: bool = False  # the release draws one strength per batch and scale
    requant: bool = True  # the release's noise_apply_requant: sum the flipped bits' codes (false: flips have no effect)


@dataclass
class LossConfig:
    reweight_by_scale: bool = True  # per-token weight sqrt(h_K w_K / h_k w_k) (the release's training recipe); false = plain mean
    label_smoothing: float = 0.0  # on the 2-way bit cross-entropy of training (validation never smooths)


@dataclass
class ModelConfig:
    """One transformer of the family. ``depth`` is the dial; width and heads follow the shape rule
    (width = 64 * depth, heads = depth) unless a published rung pins them."""

    name: str = "custom"
    depth: int = 4
    width: Optional[int] = None
    heads: Optional[int] = None
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    cond_drop: float = 0.1  # caption dropout for classifier-free guidance
    max_scales: int = 15
    attention: Attention = Attention.auto
    text_pool_heads: Optional[int] = None  # None: the release's rule, text width / 128 (/ 64 above width 4096)
    input_resampling: InputResampling = InputResampling.bilinear  # running sum -> next scale's input
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    self_correction: SelfCorrectionConfig = field(default_factory=SelfCorrectionConfig)
    loss: LossConfig = field(default_factory=LossConfig)


@dataclass
class TokenizerLossConfig:
    l1: float = 1.0
    perceptual: float = 1.0
    perceptual_weights: Optional[str] = None  # VGG-like feature network weights file (required if perceptual > 0)
    gan: float = 0.3
    gan_kind: str = "hinge"  # hinge | non_saturating
    gan_start_step: int = 2000
    lecam: float = 0.001
    quantizer: float = 4.0
    entropy: float = 0.1
    reg: bool = False  # losses on early-scale partial reconstructions + random trailing-scale dropping


@dataclass
class PcaTokenizerConfig:
    fit_images: int = 2048  # training images the patch PCA and its decoder are fitted on


@dataclass
class TokenizerConfig:
    name: str = "custom"
    kind: TokenizerKind = TokenizerKind.bsq  # bsq: trained CNN autoencoder; pca: fitted linear tokenizer (see pca_tokenizer.py)
    d: int = 16
    base_channels: int = 128
    channel_multipliers: list[int] = field(default_factory=lambda: [1, 2, 4, 4, 4])
    encoder_res_blocks: int = 2
    decoder_res_blocks: int = 3
    patchify: bool = False  # stride 8 with 2x2 patchify: tokens still cover 16x16 pixels
    latent_layernorm: bool = False  # LayerNorm (weight 1/sqrt(d)) on the latent before quantization; see LatentLayerNorm
    checkpoint: Optional[str] = None  # trained or reference tokenizer weights
    lr: float = 1e-4
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    pca: PcaTokenizerConfig = field(default_factory=PcaTokenizerConfig)


@dataclass
class MixtureSourceConfig:
    shards: str = "???"  # brace pattern, directory or pipe: command
    weight: float = 1.0
    manifest: Optional[str] = None


@dataclass
class DataConfig:
    name: str = "custom"
    source: DataSource = DataSource.synthetic
    train_shards: Optional[str] = None  # brace pattern, local path or pipe: command
    val_shards: Optional[str] = None
    manifest: Optional[str] = None  # manifest.json with per-shard sample counts (default: beside local shards)
    resampled: bool = False  # draw shards with replacement (endless) instead of exact epochs
    mixture: list[MixtureSourceConfig] = field(default_factory=list)  # weighted sources (resampled)
    root: str = "data/synthetic"  # where the synthetic shards are written
    resolution: int = 64
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0])
    global_batch_size: int = 16
    num_workers: int = 2
    shuffle_buffer: int = 1000
    short_caption_prob: float = 0.3
    caption_tokens: int = 32  # mean caption length in text-encoder tokens, for the FLOP counter
    synthetic_train_samples: int = 4096
    synthetic_val_samples: int = 256
    seed: int = 0


@dataclass
class ParallelConfig:
    name: str = "custom"
    strategy: Strategy = Strategy.single
    activation_checkpointing: Checkpointing = Checkpointing.off
    compile: bool = False
    precision: Precision = Precision.auto
    reshard_after_forward: bool = True
    replicate_degree: int = 1  # HSDP: replicas across the outer mesh dimension
    zero_stage: int = 2  # DeepSpeed only
    offload_optimizer: bool = False  # DeepSpeed only


@dataclass
class OptimConfig:
    name: str = "custom"
    lr: float = 6e-3  # peak learning rate at a global batch of `lr_reference_batch`
    lr_reference_batch: int = 256  # lr scales linearly with global batch / this
    betas: list[float] = field(default_factory=lambda: [0.9, 0.97])
    eps: float = 1e-8
    weight_decay: float = 0.005
    grad_clip: float = 5.0
    grad_accum_steps: int = 1
    fused: str = "auto"  # auto | true | false
    max_nonfinite_steps: int = 5  # this many skipped (non-finite) steps in a row stop the run


@dataclass
class ScheduleConfig:
    name: ScheduleName = ScheduleName.wsd
    total_steps: int = 200
    warmup_steps: int = 20
    decay_fraction: float = 0.2  # wsd: final fraction of steps spent cooling down
    min_lr_ratio: float = 0.0


@dataclass
class LoggingConfig:
    name: str = "custom"
    wandb: WandbMode = WandbMode.offline
    project: str = "infinity-train"
    entity: Optional[str] = None
    log_every: int = 10
    val_every: int = 100
    sample_every: int = 0  # 0: no periodic sample grids
    checkpoint_every: int = 100
    checkpoint_steps: list[int] = field(default_factory=list)  # extra permanent checkpoints (cooldown branch points)
    async_checkpoint: bool = False  # write checkpoints in the background (torch.distributed.checkpoint.async_save)
    keep_last: int = 2
    keep_every: int = 0  # 0: keep no extra permanent checkpoints
    val_batches: int = 0  # held-out batches per validation (0: the whole held-out split)
    sample_prompts: int = 8  # held-out captions in each sample grid
    sample_cfg: float = 3.0  # classifier-free guidance of the sample grids
    sample_tau: float = 1.0  # temperature of the sample grids
    progress: str = "auto"  # auto (bar on a TTY, log lines otherwise) | bar | lines


@dataclass
class ClusterConfig:
    name: str = "local"
    kind: ClusterKind = ClusterKind.local
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem: Optional[str] = None
    time: str = "24:00:00"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    extra_directives: list[str] = field(default_factory=list)
    env_file: Optional[str] = None  # per-cluster NCCL / network settings
    signal_lead_s: int = 120
    requeue: bool = True


@dataclass
class SweepConfig:
    name: str = "none"
    depths: list[int] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    image_budgets: list[int] = field(default_factory=list)  # training images per run (cooldown branches)
    model: str = "family"  # model option every run starts from; depth then comes from `depths`
    overrides: list[str] = field(default_factory=list)  # applied to every transformer run
    tokenizer_overrides: list[str] = field(default_factory=list)  # applied to every tokenizer run
    tokenizer_checkpoints: dict[str, str] = field(default_factory=dict)  # d -> a trained tokenizer to reuse
    tokenizer: Optional[str] = None  # tokenizer config option of every run (pca, cpu_d16, ...); None: the base config's
    seeds: int = 1  # seeds of the smallest depth (seed 0 is the plain run; seed s > 0 runs as depth<D>_d<d>_seed<s>)
    run_overrides: dict[str, list[str]] = field(default_factory=dict)  # run name -> extra overrides
    parallel_runs: int = 1


@dataclass
class TrainConfig:
    task: Task = Task.transformer
    name: str = "default"
    run_dir: Optional[str] = None  # None: runs/<name>
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    resume: str = "auto"  # auto (newest complete checkpoint) | none | a checkpoint path
    init_from: Optional[str] = None  # start from this checkpoint in a new run directory (a cooldown branch)
    world_size: int = 1  # expected processes; the launcher overrides it from the environment
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
