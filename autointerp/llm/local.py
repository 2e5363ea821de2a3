"""In-process LLM backend: a transformers causal LM behind the ``LLMClient`` interface, no server needed.

Why it exists: the default run must work offline on a laptop CPU, so the embedded Gemma 3 270M labels
and scores features in-process. Requests run in worker threads, each forward pass on ONE torch thread and
one worker per core (``$AUTOINTERP_LLM_WORKERS``, default: the usable cores, at most 4; 1 on a GPU): the
pipeline keeps several requests in flight, and separate single-threaded passes use every core without the
OpenMP spinning that made two threads per pass slower than one on a busy 2-core machine. Torch releases
the GIL inside its kernels; the tokenizer (not safe to share across threads) is used under a lock.

Logprobs come straight from the logits. With ``echo=True`` the prompt's own tokens get their
log-probability and top-N alternatives from the SAME forward pass that starts generation; this is what
makes simulation scoring cheap (one pass reads a predicted-activation distribution at every slot).
A prompt is prefilled in fixed blocks, continuing from the state of a prefix a recent prompt shared
(``prefix_states``: the explainer's worked examples are prefilled once, with the same numbers).
The output head (Gemma: 262k words x 640) costs more than the whole 270M-parameter body on an echoed
prompt, so it runs only where it is read: the last position without echo, and with ``echo_at`` only at
the positions predicting those offsets' tokens (a simulation prompt reads ~1 position in 5).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from autointerp.llm.base import Completion, LLMClient, LLMError, TokenLogprob, Usage
from autointerp.llm.prefix_states import PrefixStates

DEFAULT_LOCAL_MODEL = "gemma-3-270m"
HEAD_CHUNK = 128  # prompt positions per output-head chunk (bounds memory: chunk x vocab floats)
THREADS_ENV = "AUTOINTERP_LLM_THREADS"
WORKERS_ENV = "AUTOINTERP_LLM_WORKERS"


def default_threads() -> int:
    """Torch threads for the worker: 1 unless $AUTOINTERP_LLM_THREADS says otherwise. Measured on a shared
    2-core machine, one thread ran Gemma 270M prefill + decoding 4-5x faster than two (OpenMP threads spin
    and stall when the cores are busy), and decoding single tokens gains little from a second thread anyway."""
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        return 1


def default_workers(device: str = "auto") -> int:
    """Requests served at once: $AUTOINTERP_LLM_WORKERS, else one per usable core (at most 4), 1 on a GPU
    (one device runs one pass at a time anyway)."""
    try:
        if os.environ.get(WORKERS_ENV):
            return max(1, int(os.environ[WORKERS_ENV]))
    except ValueError:
        return 1
    if device not in ("auto", "cpu") and not device.startswith("cpu"):
        return 1
    if device == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                return 1
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class LocalClient(LLMClient):
    """A local causal LM (default: the embedded Gemma 3 270M) answering chat and completion requests."""

    supports_logprobs = True

    def __init__(self, model: str | None = None, device: str = "auto"):
        self.spec = model or DEFAULT_LOCAL_MODEL
        self.model_name = self.spec
        self.device = device
        self.threads = default_threads()
        self.workers = default_workers(device)
        self.usage = Usage()
        self._lm = None
        self._load_lock = threading.Lock()
        self._text_lock = threading.Lock()  # tokenizer calls and usage totals, shared by the workers
        self._pieces: dict[int, str] = {}  # token id -> its decoded text (_piece)
        self._prefixes = PrefixStates()  # states of prompt prefixes shared by recent prompts (the explainer's examples)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="autointerp-local-llm")

    # -- loading -------------------------------------------------------------------------------
    def loaded(self):
        """The LoadedModel, loaded on first use (in whichever thread asks first)."""
        with self._load_lock:
            if self._lm is None:
                from autointerp.errors import UserError
                from autointerp.models.load import load_model

                lm = load_model(self.spec, device=self.device, dtype="float32")
                if not lm.is_causal:
                    raise UserError(f"{self.spec} is not a causal language model, so it cannot generate labels; set [llm] model to a causal LM (default gemma-3-270m)")
                self._lm = lm
            return self._lm

    # -- LLMClient -----------------------------------------------------------------------------
    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None) -> Completion:
        prompt = await self._run(self.render_chat, messages)
        return await self._run(self._complete_sync, prompt, max_tokens, temperature, logprobs, False, False, None)

    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, logprobs: int | None = None, echo: bool = False, echo_at=None) -> Completion:
        wanted = frozenset(echo_at) if echo_at is not None else None
        return await self._run(self._complete_sync, prompt, max_tokens, temperature, logprobs, echo, True, wanted)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        self._lm = None

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    # -- prompt formatting ---------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The tokenizer's chat template when it has one; else a plain 'Role: text' transcript (base models)."""
        tok = self.loaded().tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        parts = []
        for message in messages:
            role = message.get("role", "user")
            parts.append(message["content"] if role == "system" else f"{role.capitalize()}: {message['content']}")
        return "\n\n".join(parts) + "\n\nAssistant:"

    # -- the work (worker thread) --------------------------------------------------------------
    def _complete_sync(self, prompt: str, max_tokens: int, temperature: float, logprobs: int | None, echo: bool, add_bos: bool,
                       echo_at: frozenset[int] | None = None) -> Completion:
        import torch

        lm = self.loaded()
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        tok = lm.tokenizer
        with self._text_lock:
            enc = tok(prompt, add_special_tokens=add_bos, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        if not ids:
            raise LLMError("empty prompt")
        limit = lm.max_positions
        if limit is not None and len(ids) + max_tokens > limit:
            raise LLMError(f"prompt of {len(ids)} tokens + {max_tokens} new exceeds the model's context of {limit}")
        device = next(lm.model.parameters()).device
        with torch.inference_mode():
            input_ids = torch.tensor([ids], device=device)
            prompt_lp: list[TokenLogprob] = []
            if echo:
                last_logits, past, prompt_lp = self._echo_forward(lm, input_ids, ids, enc["offset_mapping"], logprobs or 0, echo_at)
            else:
                last_logits, past = self._prefill(lm, ids, device)
            text, gen_lp, finish = self._generate(lm, last_logits, past, len(ids), max_tokens, temperature, logprobs, len(prompt))
        completion_tokens = len(gen_lp)
        usage = Usage(prompt_tokens=len(ids), completion_tokens=completion_tokens, calls=1)
        with self._text_lock:
            self.usage.add(usage)
        want_lp = logprobs is not None
        return Completion(
            text=(prompt + text) if echo else text,
            usage=usage,
            logprobs=(prompt_lp + gen_lp) if want_lp else None,
            finish_reason=finish,
        )

    def _prefill(self, lm, ids: list[int], device):
        """The prompt's state and its last position's logits, prefilled in ``prefix_states.BLOCK``-token blocks
        from the longest prefix a recent prompt left (``prefix_states``): the same numbers as without reuse."""
        import torch

        start, past = self._prefixes.lookup(ids)
        keep_at = self._prefixes.plan(ids)
        decoder, block, n = lm.model.get_decoder(), self._prefixes.block, len(ids)
        pos = start
        while True:
            end = min(pos + block, n)
            chunk = torch.tensor([ids[pos:end]], device=device)
            if end == n:  # the last block: the output head at its last position only
                out = lm.model(input_ids=chunk, past_key_values=past, use_cache=True, logits_to_keep=1)
                return out.logits[0, -1].float(), out.past_key_values
            past = decoder(input_ids=chunk, past_key_values=past, use_cache=True).past_key_values
            pos = end
            if pos == keep_at:
                self._prefixes.keep(ids[:pos], past)

    def _echo_forward(self, lm, input_ids, ids: list[int], offsets, top_n: int, echo_at: frozenset[int] | None = None):
        """One pass over the prompt: per-token logprob + top-N alternatives, and the state to generate from.

        With ``echo_at`` only the tokens starting at those character offsets get a record (and the head runs
        only at the positions predicting them, plus the last one that starts generation)."""
        import torch

        model = lm.model
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        softcap = getattr(getattr(model.config, "get_text_config", lambda: model.config)(), "final_logit_softcapping", None)
        hidden_out = decoder(input_ids=input_ids, use_cache=True)
        hidden, past = hidden_out.last_hidden_state[0], hidden_out.past_key_values
        n = len(ids)
        # logits at position pos predict token pos + 1; the last position starts generation
        wanted = [pos for pos in range(n - 1) if echo_at is None or offsets[pos + 1][0] in echo_at]
        positions = torch.tensor(wanted + [n - 1], dtype=torch.long, device=hidden.device)
        records: list[TokenLogprob] = []
        last_logits = None
        for start in range(0, len(positions), HEAD_CHUNK):
            chunk = positions[start:start + HEAD_CHUNK]
            logits = head(hidden[chunk]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logp = torch.log_softmax(logits, dim=-1)
            if top_n:
                top_vals, top_ids = torch.topk(logp, k=min(top_n, logp.shape[-1]), dim=-1)
            for row, pos in enumerate(chunk.tolist()):
                if pos + 1 >= n:
                    continue
                nxt = ids[pos + 1]
                records.append(self._record(lm, nxt, float(logp[row, nxt]), top_vals[row] if top_n else None, top_ids[row] if top_n else None, offsets[pos + 1][0]))
            last_logits = logits[-1]
        first = TokenLogprob(token=self._piece(lm, ids[0]), logprob=None, top={}, text_offset=offsets[0][0])
        if (lm.tokenizer.bos_token_id is not None and ids[0] == lm.tokenizer.bos_token_id and offsets[0] == (0, 0)) or (
                echo_at is not None and offsets[0][0] not in echo_at):
            first = None  # the added BOS is not part of the prompt text (and a token not asked for is not echoed)
        return last_logits, past, ([first] if first else []) + records

    def _generate(self, lm, logits, past, n_prompt: int, max_tokens: int, temperature: float, top_n: int | None, text_start: int):
        import torch

        tok = lm.tokenizer
        eos = set(_as_list(lm.model.generation_config.eos_token_id) or []) | ({tok.eos_token_id} if tok.eos_token_id is not None else set())
        new_ids: list[int] = []
        records: list[TokenLogprob] = []
        finish = "length"
        text = ""
        for _ in range(max_tokens):
            logp = torch.log_softmax(logits.float(), dim=-1)
            if temperature and temperature > 0:
                nxt = int(torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1))
            else:
                nxt = int(torch.argmax(logp))
            if nxt in eos:
                finish = "stop"
                break
            vals, idx = torch.topk(logp, k=top_n) if top_n else (None, None)
            records.append(self._record(lm, nxt, float(logp[nxt]), vals, idx, text_start + len(text)))
            new_ids.append(nxt)
            with self._text_lock:
                text = tok.decode(new_ids, skip_special_tokens=True)
            out = lm.model(input_ids=torch.tensor([[nxt]], device=logits.device), past_key_values=past, use_cache=True)
            logits, past = out.logits[0, -1], out.past_key_values
        return text, records, finish

    def _piece(self, lm, token_id: int) -> str:
        """One token's text, decoded once per id: an echo request names ~20 alternatives at every read position,
        mostly the same few ids (the digits), and the workers would otherwise queue on the tokenizer lock."""
        piece = self._pieces.get(token_id)
        if piece is None:
            with self._text_lock:
                piece = self._pieces[token_id] = lm.tokenizer.decode([token_id])
        return piece

    def _record(self, lm, token_id: int, logprob: float, top_vals, top_ids, offset: int) -> TokenLogprob:
        top: dict[str, float] = {}
        if top_vals is not None:
            for value, idx in zip(top_vals.tolist(), top_ids.tolist()):
                top.setdefault(self._piece(lm, idx), value)  # two ids can decode alike: keep the likelier
        return TokenLogprob(token=self._piece(lm, token_id), logprob=logprob, top=top, text_offset=offset)


def _as_list(value) -> list[int] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]
