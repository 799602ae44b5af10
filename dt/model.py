"""Decision Transformer (on HuggingFace's implementation), its return-aligned variant and the MLP BC baseline
(built from a :class:`dt.config.ModelConfig`).

Both models share one call signature so the trainer, the policy and the
evaluator never branch on the model type::

    out = model(states, actions, returns_to_go, timesteps, mask)
    out.actions  # (B, K, A) for DT, (B, 1, A) for BC: the prediction for the last step is out.actions[:, -1]
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DecisionTransformerModel
from transformers.utils import logging as hf_logging

from dt.config import ModelConfig
from dt.ops import fast_dropout

hf_logging.set_verbosity_error()  # the DT config inherits GPT-2 token ids that warn for vocab_size=1
# torch.jit.trace reads every attribute of the traced modules, and transformers warns on reading this deprecated
# property, which nobody here uses. Filters rather than warnings.catch_warnings, which is not thread-safe.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
# torch 2.13 marks torch.jit.trace deprecated in favour of torch.compile / torch.export. Measured here at batch 1
# (quick-preset DT, one thread): TorchScript 0.67 ms a call, eager 1.56, an exported program's module 2.52, and
# compiling costs tens of seconds; so acting keeps the traced graph while it exists and falls back to eager.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=DeprecationWarning)


@dataclass
class ModelOutput:
    """Predicted actions and, when asked for, attention weights.

    Attributes:
        actions: (B, K, A) for DT, (B, 1, A) for BC.
        attentions: One (B, n_head, 3K, 3K) tensor per layer, or None.
    """

    actions: torch.Tensor
    attentions: tuple[torch.Tensor, ...] | None = None


class _Model(nn.Module):
    """What both models share: a dropout generator (set by the trainer) and per-process state that a copy or a
    pickle must not take along (locks do not copy; a traced graph and a generator belong to the original)."""

    _TRANSIENT: tuple[str, ...] = ("dropout_generator",)

    def __init__(self) -> None:
        super().__init__()
        self.dropout_generator: torch.Generator | None = None  # None: the global torch RNG

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in self._TRANSIENT:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._fresh_transients()

    def _fresh_transients(self) -> None:
        self.dropout_generator = None


class DecisionTransformer(_Model):
    """GPT-2 over (R_1, s_1, a_1, R_2, ...) tokens; the action is read from each state token.

    The network is transformers' ``DecisionTransformerModel`` (kept as
    ``self.hf`` so weights saved with ``save_pretrained`` load directly).
    Deviation from the reference: HF's GPT-2 adds its position embedding at
    position 0 to every token, a learned constant bias; the reference removed
    the position embedding. The timestep embedding carries order in both.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        try:
            self.hf = DecisionTransformerModel(config.hf_config())
        except ValueError:  # a transformers release without sdpa for this model (5.17 has none): eager, same maths
            hf_config = config.hf_config()
            hf_config._attn_implementation = "eager"
            self.hf = DecisionTransformerModel(hf_config)
        self._kernel = self.hf.config._attn_implementation
        self._attn_lock = threading.Lock()
        self.fast = True  # use the lean forward for actions; False runs transformers' forward
        self.hf_computes_it = True  # transformers' forward is this model (the attention maps come from it)
        # By "batch of one" (each graph keeps its shapes); None where tracing failed.
        self._traced: dict[bool, torch.jit.ScriptModule | None] = {}
        self._trace_lock = threading.Lock()

    # A traced graph reads the original's parameters: a copy starts without one and traces its own.
    _TRANSIENT = ("dropout_generator", "_attn_lock", "_trace_lock", "_traced")

    def _fresh_transients(self) -> None:
        super()._fresh_transients()
        self._attn_lock = threading.Lock()
        self._trace_lock = threading.Lock()
        self._traced = {}

    def unused_in_training(self) -> list[str]:
        """Parameters the lean forward never reads (no gradient; DDP must not wait for them)."""
        if not self.fast:
            return []
        return [
            n
            for n, _ in self.named_parameters()
            if n.startswith(("hf.encoder.wte.", "hf.predict_state.", "hf.predict_return."))
        ]

    @contextmanager
    def _eager_attention(self):
        # sdpa returns no attention weights, so switch to the eager kernel for
        # this call only; the lock keeps concurrent callers (app sessions
        # sharing a cached model) from switching it back under each other.
        with self._attn_lock:
            self.hf.set_attn_implementation("eager")
            try:
                yield
            finally:
                self.hf.set_attn_implementation(self._kernel)

    def forward(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        output_attentions: bool = False,
        last_only: bool = False,
    ) -> ModelOutput:
        """Predict actions from (B, K, ·) inputs; ``mask`` (B, K) is 1 on real steps.

        ``last_only`` computes only the last step's action (B, 1, A), as acting needs.
        """
        kwargs = dict(
            states=states,
            actions=actions,
            rewards=None,
            returns_to_go=returns_to_go,
            timesteps=timesteps,
            attention_mask=mask,
            return_dict=True,
        )
        if not self.hf_computes_it:
            inputs = (states, actions, returns_to_go, timesteps, mask)
            preds, attn = self._tokens_forward(inputs, last_only, with_attention=output_attentions)
            return ModelOutput(preds, attn)
        if output_attentions:
            with self._eager_attention():
                out = self.hf(**kwargs, output_attentions=True)
            preds = out.action_preds[:, -1:] if last_only else out.action_preds
            return ModelOutput(preds, tuple(out.attentions))
        if self.fast:
            return ModelOutput(self._fast_actions(states, actions, returns_to_go, timesteps, mask, last_only))
        preds = self.hf(**kwargs).action_preds
        return ModelOutput(preds[:, -1:] if last_only else preds)

    def last_actions(self, *inputs: torch.Tensor) -> torch.Tensor:
        """(B, 1, A): the last step's action, for acting; the same numbers as ``forward(*inputs, last_only=True)``.

        In eval mode on CPU (no autocast) the lean forward runs as one TorchScript graph, traced once per model
        on first use and then shared by every caller: at batch 1 a step costs about 0.5 ms instead of 1.0-1.3
        (the eager forward dispatches about 60 small ops from Python), which is most of a 1000-step rollout's
        time in the app. The graph reads the model's own parameters, so later weight updates are seen. Anywhere
        else (training mode, CUDA, autocast, transformers' forward) it is the eager forward.
        """
        states = inputs[0]
        if self.training or not self.fast or states.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            s, a, r, t, m = inputs
            return (
                self._fast_actions(s, a, r, t, m, last_only=True)
                if self.fast
                else self(*inputs, last_only=True).actions
            )
        # One graph for single episodes (the app) and one for batches (evaluation): TorchScript specialises a
        # graph to the shapes it sees, and a batch-of-one graph that has also seen batches runs a third slower.
        single = states.shape[0] == 1
        with self._trace_lock:
            if single not in self._traced:
                # Where TorchScript is missing or fails, acting stays eager.
                try:
                    with torch.no_grad():
                        self._traced[single] = torch.jit.trace(_LastActions(self), inputs, check_trace=False)
                except Exception:
                    self._traced[single] = None
            traced = self._traced[single]
        s, a, r, t, m = inputs
        return traced(*inputs) if traced is not None else self._fast_actions(s, a, r, t, m, last_only=True)

    def _fast_actions(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Same function as ``self.hf(...).action_preds`` with the same weights, less work.

        It skips transformers' generic mask and output plumbing, the unused
        state/return heads, and in the last block computes queries, the
        attention output and the MLP only for the state tokens, the only ones
        an action is read from. A test checks it against the HF forward.
        """
        return self._tokens_forward((states, actions, returns_to_go, timesteps, mask), last_only)[0]

    def _modulations(self, returns_to_go: torch.Tensor) -> list[torch.Tensor] | None:
        """Per-layer LayerNorm scale and shift from the return-to-go (:class:`ReturnAlignedDT`); None for the DT."""
        return None

    def _tokens_forward(
        self, inputs: tuple[torch.Tensor, ...], last_only: bool = False, with_attention: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Actions (B, K, A) (or (B, 1, A) with ``last_only``) and, with ``with_attention``, each layer's
        attention weights (B, nh, 3K, 3K) (then every token is computed in every layer).

        ``inputs``: states, actions, returns-to-go, timesteps and mask, as for :meth:`forward`.
        """
        states, actions, returns_to_go, timesteps, mask = inputs
        hf, enc = self.hf, self.hf.encoder
        b, k = states.shape[0], states.shape[1]
        h = self.config.embed_dim
        nh = self.config.n_head
        t_emb = hf.embed_timestep(timesteps)  # (B, K, H)
        x = torch.stack(
            (hf.embed_return(returns_to_go) + t_emb, hf.embed_state(states) + t_emb, hf.embed_action(actions) + t_emb),
            dim=2,
        ).reshape(b, 3 * k, h)  # (B, 3K, H): R_1, s_1, a_1, R_2, ...
        x = hf.embed_ln(x) + enc.wpe.weight[0]  # HF adds position embedding 0 to every token
        p = self.config.dropout if self.training else 0.0
        g = self.dropout_generator
        x = fast_dropout(x, p, g)
        mods = self._modulations(returns_to_go)  # per layer (B, 3K, 4H), then the final (B, 3K, 2H)

        # Causal mask plus key padding; a padded query may see itself so no softmax row is empty.
        n = 3 * k
        valid = mask.bool().repeat_interleave(3, dim=1)  # (B, 3K)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        attn_mask = (causal & (valid[:, None, :] | eye))[:, None]  # (B, 1, 3K, 3K)

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, nh, L, H/nh)
            return t.reshape(b, t.shape[1], nh, h // nh).transpose(1, 2)

        def modulated(y: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:  # adaptive LayerNorm: y (1 + scale) + shift
            scale, shift = mod.chunk(2, dim=-1)
            return y * (1 + scale) + shift

        attentions = []
        last = len(enc.h) - 1
        for i, blk in enumerate(enc.h):
            a = blk.attn
            y = blk.ln_1(x)
            if mods is not None:
                y = modulated(y, mods[i][..., : 2 * h])
            q, kk, v = a.c_attn(y).split(h, dim=2)  # (B, 3K, H) each
            m = attn_mask
            if i == last and not with_attention:  # only state-token queries (or the last one) are needed from here on
                sel = slice(n - 2, n - 1) if last_only else slice(1, None, 3)
                x, q, m = x[:, sel], q[:, sel], attn_mask[:, :, sel]
                if mods is not None:
                    mods = [md[:, sel] for md in mods]
            if p > 0 or with_attention:  # explicit attention (its dropout uses the cheap mask below)
                w = (heads(q) @ heads(kk).transpose(-1, -2)) * (h // nh) ** -0.5  # (B, nh, L, 3K)
                w = torch.softmax(w.masked_fill(~m, float("-inf")), dim=-1)
                attentions.append(w)
                o = fast_dropout(w, p, g) @ heads(v)
            else:
                o = F.scaled_dot_product_attention(heads(q), heads(kk), heads(v), attn_mask=m)
            o = o.transpose(1, 2).reshape(b, x.shape[1], h)  # (B, L, H)
            x = x + fast_dropout(a.c_proj(o), p, g)
            mlp = blk.mlp
            y = blk.ln_2(x)
            if mods is not None:
                y = modulated(y, mods[i][..., 2 * h :])
            x = x + fast_dropout(mlp.c_proj(mlp.act(mlp.c_fc(y))), p, g)
        y = enc.ln_f(x)
        if mods is not None:
            y = modulated(y, mods[-1])
        preds = hf.predict_action(y)  # (B, K, A), or (B, 3K, A) with the attention
        if with_attention:
            preds = preds[:, n - 2 : n - 1] if last_only else preds[:, 1::3]
        return preds, (tuple(attentions) if with_attention else None)

    def weights_module(self) -> nn.Module:
        """The module whose state dict is the checkpoint's ``model.safetensors`` (transformers' keys for the DT)."""
        return self.hf


class ReturnAlignedDT(DecisionTransformer):
    """The Decision Transformer with every LayerNorm modulated by the return-to-go (model type ``radt``).

    RADT's (Tanaka et al., TMLR 2025) adaptive LayerNorm: scale and shift from the return-to-go of the token's
    step, before each block's attention and MLP and before the action head, so the target reaches every layer
    directly, not only through attention to return tokens. Token layout, masks and attention maps are the DT's
    (return tokens kept). The modulation starts at zero (adaLN-Zero): at initialisation it is exactly a DT.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.hf_computes_it = False  # transformers' forward knows nothing of the modulation
        h = config.embed_dim
        self.embed_condition = nn.Sequential(nn.Linear(1, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        self.modulate = nn.ModuleList(nn.Linear(h, 4 * h) for _ in range(config.n_layer))
        self.modulate_final = nn.Linear(h, 2 * h)
        for lin in (*self.modulate, self.modulate_final):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _modulations(self, returns_to_go: torch.Tensor) -> list[torch.Tensor]:
        c = self.embed_condition(returns_to_go).repeat_interleave(3, dim=1)  # (B, 3K, H): a step's 3 tokens
        return [lin(c) for lin in (*self.modulate, self.modulate_final)]

    def weights_module(self) -> nn.Module:
        return self


class _LastActions(nn.Module):
    """``model._fast_actions(..., last_only=True)`` as a module, the shape torch.jit.trace records."""

    def __init__(self, model: DecisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rtg: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.model._fast_actions(states, actions, rtg, timesteps, mask, last_only=True)


class MLPBC(_Model):
    """Behaviour cloning: an MLP from the last K states (flattened) to the next action.

    As in the reference ``MLPBCModel``: Linear, then (ReLU, Dropout, Linear) x
    n_layer, tanh output. It reads only states, so it predicts one action.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.embed_dim
        layers: list[nn.Module] = [nn.Linear(config.context_len * config.state_dim, h)]
        for _ in range(config.n_layer - 1):
            layers += [nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, h)]
        layers += [nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, config.act_dim)]
        if config.action_tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        output_attentions: bool = False,
        last_only: bool = False,
    ) -> ModelOutput:
        b = states.shape[0]
        x = states[:, -self.config.context_len :].reshape(b, -1)  # (B, K*S)
        for layer in self.net:
            if isinstance(layer, nn.Dropout) and self.training and self.dropout_generator is not None and layer.p > 0:
                # F.dropout's own CPU computation, drawing from the model's generator (same numbers as before).
                noise = torch.empty_like(x).bernoulli_(1 - layer.p, generator=self.dropout_generator)
                x = x * noise.div_(1 - layer.p)
            else:
                x = layer(x)
        return ModelOutput(x.reshape(b, 1, self.config.act_dim))

    def weights_module(self) -> nn.Module:
        return self

    def last_actions(self, *inputs: torch.Tensor) -> torch.Tensor:
        """(B, 1, A): the last step's action (the same interface as :meth:`DecisionTransformer.last_actions`)."""
        return self(*inputs).actions


def build_model(config: ModelConfig) -> DecisionTransformer | MLPBC:
    """Model for ``config.model_type``."""
    kinds: dict[str, type[DecisionTransformer | MLPBC]] = {"dt": DecisionTransformer, "radt": ReturnAlignedDT}
    return kinds.get(config.model_type, MLPBC)(config)
