"""IA³: Infused Adapter by Inhibiting and Amplifying Inner Activations
(Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning", arXiv 2205.05638, §3.3).

IA³ learns one vector per adapted layer and rescales activations element-wise:

    attention (k, v):        h = l ⊙ (W0 x + b)       l ∈ R^out, stored (out, 1)
    feed-forward (down):     h = W0 (l ⊙ x) + b       l ∈ R^in,  stored (1, in)

(the paper's l_k ⊙ K, l_v ⊙ V and (l_ff ⊙ γ(W1 x)) W2). The vectors start at ones, so a
fresh adapter is exactly the identity. As in Hugging Face peft 0.21, the bias of an
output-scaled layer is scaled too and the bias of an input-scaled layer is not, so merging
is W ← W ⊙ l (broadcast along the stored axis) and, for output scaling, b ← b ⊙ l.

On-disk format (peft 0.21): tensor ``<module>.ia3_l`` (no ``.weight`` suffix), config keys
``target_modules``, ``feedforward_modules``, ``fan_in_fan_out``, ``init_ia3_weights``,
``modules_to_save``, ``exclude_modules``. peft decides "feedforward" with a *plain* string
suffix test (``name.endswith(entry)``), not the dotted suffix it uses for targets; see
:func:`saved_feedforward_spec` for how peftlab writes a spec peft reads the same way.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from .base import AdapterLayer, Method, MethodConfig

# peft 0.21 IA3Config keys peftlab cannot honour: any other value than these is an error
# (a Conv1D model, extra trained modules or excluded names would load wrongly otherwise).
# ``init_ia3_weights`` is accepted either way: it only picks the start values, which the
# loaded tensors overwrite.
_PEFT_DEFAULTS_WE_REQUIRE = {
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "exclude_modules": None,
    "layers_to_transform": None,
    "layers_pattern": None,
}

Spec = Any  # a list of names (dotted-suffix match) or a regular expression (fullmatch)


# -- name matching (pure functions) -----------------------------------------------------
def dotted_match(name: str, spec: Spec) -> bool:
    """PEFT's *target* semantics: regex fullmatch, or name == entry / ends in "." + entry."""
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return any(name == t or name.endswith("." + t) for t in spec)


def peft_feedforward_match(name: str, spec: Spec) -> bool:
    """peft 0.21's *feedforward* test (IA3Model._check_target_module_feedforward): regex
    fullmatch, or a plain string suffix, so "up_proj" also matches "gate_up_proj"."""
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return any(name.endswith(t) for t in spec)


def peft_accepts(target_spec: Spec, ff_spec: Spec) -> bool:
    """IA3Config.__post_init__ requires, when both are lists, feedforward ⊆ targets as
    *strings* (so ["down_proj"] is refused beside targets ["mlp.down_proj"])."""
    if isinstance(target_spec, str) or isinstance(ff_spec, str):
        return True
    return set(ff_spec) <= set(target_spec)


def saved_feedforward_spec(
    target_spec: Spec, names: list[str], ff_names: set[str], given: Spec
) -> Spec:
    """The ``feedforward_modules`` to write so that peft (and peftlab on reload) marks
    exactly ``ff_names`` among the adapted ``names`` as feedforward.

    Tried in order, the first that peft accepts and reads identically wins: the spec as
    given; the last name components of the feedforward layers (what "all-linear" targets
    are saved as); an explicit regular expression of their full names, which always works.
    """
    if not ff_names:
        return []
    explicit = "(?:" + "|".join(re.escape(n) for n in sorted(ff_names)) + ")"
    candidates = [
        given if isinstance(given, str) else list(given),
        sorted({n.rsplit(".", 1)[-1] for n in ff_names}),
        explicit,
    ]
    for cand in candidates:
        if (
            peft_accepts(target_spec, cand)
            and {n for n in names if peft_feedforward_match(n, cand)} == ff_names
        ):
            return cand
    raise AssertionError("unreachable: the explicit regex always matches exactly")


# -- config ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Ia3Config(MethodConfig):
    """IA³ options (names as in the CLI and YAML)."""

    target_modules: Any = option(
        ["k_proj", "v_proj", "down_proj"],
        "Linear modules to rescale, as in PEFT: names matched as the full module name or its "
        "dotted suffix (comma-separated on the CLI), a regular expression matched against "
        "the full name, or 'all-linear'. Default: the paper's keys, values and feed-forward "
        "down projection",
    )
    feedforward_modules: Any = option(
        ["down_proj"],
        "Targets whose INPUT is rescaled (vector of length in_features); other targets have "
        "their OUTPUT rescaled. Names matched like target_modules (list or regex); each must "
        "also select a target module",
    )

    def __post_init__(self):
        ff = self.feedforward_modules
        if isinstance(ff, tuple):
            ff = self.feedforward_modules = list(ff)
        if isinstance(ff, str):
            if ff.lower() == "all-linear":
                raise ValueError(
                    "feedforward_modules cannot be 'all-linear'; name the "
                    "feed-forward layers, e.g. ['down_proj']"
                )
            try:
                re.compile(ff)
            except re.error as e:
                raise ValueError(
                    f"feedforward_modules {ff!r} is not a valid regular expression ({e})"
                ) from None
        elif not (isinstance(ff, list) and all(isinstance(t, str) and t for t in ff)):
            raise ValueError(
                "feedforward_modules must be a list of module names or a "
                f"regular expression, got {ff!r}"
            )


# -- layer ----------------------------------------------------------------------------------
def _scale(t: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """t ⊙ vec computed in fp32 (type promotion), returned in t's dtype. Rounding the
    vector to a bf16 base's dtype first would hide every update smaller than bf16's
    spacing near 1 (2⁻⁷) from the forward pass."""
    return (t * vec).to(t.dtype)


class Ia3Linear(AdapterLayer):
    """``nn.Linear`` with a learned IA³ vector ``ia3_l`` (arXiv 2205.05638, §3.3).

    Output scaling (attention): ``base(x) ⊙ l``, bias included, l shaped (out, 1).
    Input scaling (feed-forward): ``base(x ⊙ l)``, bias untouched, l shaped (1, in).
    """

    def __init__(self, base_layer: nn.Linear, is_feedforward: bool, name: str = ""):
        super().__init__(base_layer)
        self.is_feedforward = is_feedforward
        self.module_name = name or type(base_layer).__name__  # for error messages only
        shape = (1, base_layer.in_features) if is_feedforward else (base_layer.out_features, 1)
        # fp32 whatever the base dtype: the optimiser's small steps around 1.0 would vanish
        # in bf16; the forward casts at use (see _scale).
        self.ia3_l = nn.Parameter(
            torch.ones(shape, device=base_layer.weight.device, dtype=torch.float32)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        vec = self.ia3_l.flatten()
        if self.is_feedforward:
            return self.base_layer(_scale(x, vec))
        return _scale(self.base_layer(x), vec)

    # -- merging ------------------------------------------------------------------------
    def _zeros(self) -> int:
        return int((self.ia3_l == 0).sum())

    def _rescale(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """W ← op(W, l) along the stored axis; for output scaling also b ← op(b, l)."""
        vec = self.ia3_l.detach().float()
        w = self.base_layer.weight
        w.copy_(op(w.float(), vec).to(w.dtype))  # in place: keep the Parameter object
        b = self.base_layer.bias
        if b is not None and not self.is_feedforward:
            b.copy_(op(b.float(), vec.flatten()).to(b.dtype))

    def _merge(self) -> None:
        if self._zeros():
            # Allowed, because merge_and_unload never needs to undo it, but the zeroed
            # rows/columns of W are gone for good.
            warnings.warn(
                f"IA³ vector of {self.module_name} has {self._zeros()} entries "
                "that are exactly 0: merging erases those weights, so unmerge() "
                "will not be possible"
            )
        self._rescale(torch.mul)

    def _unmerge(self) -> None:
        self._check_invertible("unmerge")
        # Exact division, not peft's `+ 1e-8`: that bias makes unmerge drift from W0.
        self._rescale(torch.div)

    def _check_invertible(self, what: str) -> None:
        if self._zeros():
            raise ValueError(
                f"cannot {what} the IA³ adapter of {self.module_name}: its vector has "
                f"{self._zeros()} entries that are exactly 0, so merging erased those "
                "weights; reload the base model instead"
            )

    def delta_weight(self) -> torch.Tensor:
        """W0 ⊙ l − W0 in fp32 (the weight only: an output-scaled bias changes too)."""
        vec = self.ia3_l.detach().float()
        w = self.base_layer.weight.float()
        if self.merged:  # the stored weight is W0 ⊙ l
            self._check_invertible("compute delta_weight() of merged")
            w = w / vec
        return w * vec - w

    def extra_repr(self) -> str:
        return f"ia3_l={tuple(self.ia3_l.shape)}, " + (
            "scales input (feedforward)" if self.is_feedforward else "scales output"
        )


# -- method ---------------------------------------------------------------------------------
class IA3(Method):
    """IA³: learned vectors rescaling the keys, values and feed-forward activations."""

    name = "ia3"
    peft_type = "IA3"
    config_cls = Ia3Config
    omit_peft_keys = ("layers_to_transform", "layers_pattern")  # IA3Config refuses them

    def __init__(self, config: Ia3Config | None = None, **options: Any):
        super().__init__(config, **options)
        # A user's feedforward names follow PEFT's dotted target semantics; an adapter
        # written by peft was classified by peft's plain suffix test, so read it that way.
        self.peft_feedforward_rule = False

    def is_feedforward(self, name: str) -> bool:
        rule = peft_feedforward_match if self.peft_feedforward_rule else dotted_match
        return rule(name, self.config.feedforward_modules)

    def check_targets(self, targets: list[str]) -> None:
        """Each feedforward entry must select at least one target (named if not). Not
        applied to adapters read from peft, which does not check this for regexes."""
        if self.peft_feedforward_rule:
            return
        ff = self.config.feedforward_modules
        for entry in [ff] if isinstance(ff, str) else ff:
            spec = entry if isinstance(ff, str) else [entry]
            if not any(dotted_match(n, spec) for n in targets):
                raise ValueError(
                    f"feedforward module {entry!r} is not among the target modules "
                    f"(target_modules={self.config.target_modules!r} selects "
                    f"{len(targets)} modules, e.g. {targets[0]}); a feedforward module must "
                    "also be a target"
                )

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"IA³ can wrap nn.Linear only; {name} is {type(module).__name__}")
        return Ia3Linear(module, self.is_feedforward(name), name)

    def to_peft_config(
        self, target_modules: Any, layers: dict[str, AdapterLayer]
    ) -> dict[str, Any]:
        names = list(layers)
        ff_names = {
            n
            for n, layer in layers.items()
            if isinstance(layer, Ia3Linear) and layer.is_feedforward
        }
        return {
            "peft_type": "IA3",
            "target_modules": target_modules,
            "feedforward_modules": saved_feedforward_spec(
                target_modules, names, ff_names, self.config.feedforward_modules
            ),
            "fan_in_fan_out": False,
            "init_ia3_weights": True,
            "exclude_modules": None,
        }

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> IA3:
        for key, default in _PEFT_DEFAULTS_WE_REQUIRE.items():
            value = cfg.get(key, default)
            if value not in (None, default, [], {}):
                raise ValueError(
                    f"adapter_config.json sets {key}={value!r}, which peftlab's "
                    f"IA³ does not support (expected {default!r})"
                )
        for key in ("target_modules", "feedforward_modules"):
            if cfg.get(key) is None:
                raise ValueError(
                    f"IA³ adapter_config.json has no {key}; peftlab needs it written out explicitly"
                )
        opts = {k: cfg[k] for k in ("target_modules", "feedforward_modules")}
        method = cls(make_config(cls.config_cls, opts, where="IA³ adapter_config.json"))
        method.peft_feedforward_rule = True
        return method
