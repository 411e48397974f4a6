"""The few llama.cpp C calls the engine needs, behind plain Python methods.

A ``NativeModel`` holds the loaded weights, vocabulary and chat template; a
``NativeContext`` on it holds one KV cache (a unified one, in which
``llama_memory_seq_cp`` shares cells between sequences, or one stream per sequence)
and one reusable batch. Several contexts may share one model. Only the scheduler
thread touches a context.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as ll
import numpy as np

from ponder.engines.base import EngineError
from ponder.engines.llamacpp.layout import kv_bytes_per_cell
from ponder.engines.llamacpp.streams import StreamMap
from ponder.types import Message

_LOG_CALLBACK = None


def _quiet_logs() -> None:
    """Silence llama.cpp's stderr chatter unless PONDER_LLAMA_LOG is set."""
    global _LOG_CALLBACK
    if os.environ.get("PONDER_LLAMA_LOG") or _LOG_CALLBACK is not None:
        return

    @ll.llama_log_callback
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _LOG_CALLBACK = _drop
    ll.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


class NativeError(EngineError):
    """llama.cpp refused: a model file it cannot load, a context it cannot make."""


@functools.cache
def cpu_has_amx() -> bool:
    """Whether the CPU has Intel AMX (Sapphire Rapids and later), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def extra_buffers_allowed() -> bool:
    """Whether llama.cpp may repack weights into its extra CPU buffer types.

    On AMX CPUs llama.cpp's AMX buffer type segfaults in ``ggml_backend_amx_mul_mat`` on
    the first multi-token batch (seen on this project's machines with Q4 models; upstream
    llama.cpp issue #20824, unfixed), so ponder turns the extra buffer types off there.
    ``PONDER_REPACK=1`` forces them on, ``PONDER_REPACK=0`` off.
    """
    forced = os.environ.get("PONDER_REPACK", "").strip()
    if forced in {"0", "1"}:
        return forced == "1"
    return not cpu_has_amx()


def model_params() -> ll.llama_model_params:
    """llama.cpp's default model parameters, with ``extra_buffers_allowed`` applied."""
    params = _DEFAULT_MODEL_PARAMS()
    if not extra_buffers_allowed():
        params.use_extra_bufts = False
    return params


_DEFAULT_MODEL_PARAMS = ll.llama_model_default_params


def flash_attn_type(flash_attn: bool | None = None) -> int:
    """llama.cpp's ``flash_attn_type`` for a context: 1 on, 0 off, -1 llama.cpp decides
    (on, for the CPU builds this project uses). ``PONDER_FLASH_ATTN=0/1`` overrides
    ``None``. See ``one_problem_flash_attn`` for when off is the faster choice."""
    if flash_attn is not None:
        return 1 if flash_attn else 0
    forced = os.environ.get("PONDER_FLASH_ATTN", "").strip()
    if forced in {"0", "1"}:
        return int(forced)
    return -1


def one_problem_flash_attn() -> bool | None:
    """The attention setting for an engine that works on one problem at a time
    (``ponder solve``): off on a CPU-only build, else llama.cpp's choice.

    On a CPU, llama.cpp's flash-attention kernel is several times slower per attended
    KV cell than the plain matrix-product attention (16 sequences decoding over a shared
    3,000-token prompt: 0.69 s a step with it, 0.17 s without), but it skips the cells of
    other sequences, which the matrix product multiplies and masks. One problem's
    branches share most of their cells, so off wins (1.7-2.8x on the search workload
    of ``ponder bench engine``, across two sessions' runs); many problems at once fill
    the cache with cells each query must skip, so on wins there (evaluations, a busy
    server). ``ponder bench attention`` measures both; docs/BENCHMARKS.md.
    """
    return None if ll.llama_supports_gpu_offload() else False


def flash_attn_setting(choice: str, one_problem: bool) -> bool | None:
    """The engine's ``flash_attn`` for a ``--flash-attn`` choice (``auto``, ``on``,
    ``off``); ``auto`` is ``one_problem_flash_attn()`` for one problem, else None."""
    if choice != "auto":
        return choice == "on"
    return one_problem_flash_attn() if one_problem else None


def guard_llama_cpp() -> None:
    """Make llama-cpp-python's own ``Llama`` class (and its server) load models with
    ``model_params`` — for the peers ponder is measured against and tested with, which
    would otherwise crash on AMX CPUs."""
    import llama_cpp.llama_cpp as bindings

    ll.llama_model_default_params = model_params
    bindings.llama_model_default_params = model_params


class NativeModel:
    """A loaded GGUF model: its weights (in memory once, however many contexts use them),
    vocabulary and chat template. Contexts (``NativeContext``) are made on it."""

    def __init__(self, path: Path) -> None:
        _quiet_logs()
        ll.llama_backend_init()
        self.model = ll.llama_model_load_from_file(str(path).encode(), model_params())
        if not self.model:
            raise NativeError(f"llama.cpp could not load {path} (corrupt or unsupported GGUF?)")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.model)
        m = self.model
        self.kv_bytes_per_cell = kv_bytes_per_cell(
            ll.llama_model_n_layer(m), ll.llama_model_n_head_kv(m),
            ll.llama_model_n_embd(m), ll.llama_model_n_head(m),
        )  # fmt: skip
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        tmpl = ll.llama_model_chat_template(self.model, None)
        self.chat_template: bytes | None = tmpl if tmpl else None
        self.description = self._meta("general.name") or path.name

    def close(self) -> None:
        if self.model:
            ll.llama_model_free(self.model)
            self.model = None

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(512)
        n = ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for; special tokens (end of turn…) render as nothing."""
        cached = self._pieces.get(token)
        if cached is None:
            n = ll.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
            cached = self._piece_buf.raw[: max(n, 0)]
            self._pieces[token] = cached
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def eog_ids(self) -> np.ndarray:
        """Every end-of-generation token id (found once by scanning the vocabulary)."""
        return np.array([t for t in range(self.n_vocab) if self.is_eog(t)], dtype=np.int64)

    def apply_chat_template(self, messages: Sequence[Message]) -> str:
        if self.chat_template is None:
            raise ValueError(
                "this model has no chat template in its GGUF metadata: send raw text prompts"
            )
        keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
        arr = (ll.llama_chat_message * len(keep))()
        for i, (role, content) in enumerate(keep):
            arr[i].role = role
            arr[i].content = content
        size = 2 * sum(len(c) + len(r) for r, c in keep) + 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_chat_apply_template(self.chat_template, arr, len(keep), True, buf, size)
            if n < 0:
                raise ValueError("llama.cpp does not support this model's chat template")
            if n <= size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1
        raise NativeError("chat template output kept growing")


class NativeContext:
    """One llama.cpp context (a KV cache and a batch) on a ``NativeModel``.

    ``streams=False``: one unified KV cache of ``n_ctx`` cells shared by ``n_seq_max``
    sequences; ``seq_copy`` shares cells (no data moves) and every query's attention
    runs over the used range of all sequences' cells. ``streams=True``: one KV stream of
    ``n_ctx // n_seq_max`` cells per sequence (plus a spare stream); a query attends its
    own stream only, ``seq_copy`` copies the source's stream (the whole stream buffer,
    once, on the next decode), and sequence ids are slots that ``streams.StreamMap``
    keeps on consecutive streams so that a step stays one micro-batch.
    ``model`` may be a path: the context then loads the model and owns it.
    """

    def __init__(
        self,
        model: NativeModel | Path,
        n_ctx: int,
        n_seq_max: int,
        n_batch: int,
        n_threads: int,
        flash_attn: bool | None = None,
        streams: bool = False,
    ) -> None:
        self._owns_model = not isinstance(model, NativeModel)
        self.native_model = model if isinstance(model, NativeModel) else NativeModel(model)
        nm = self.native_model
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = (n_ctx // n_seq_max) * (n_seq_max + 1) if streams else n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max + 1 if streams else n_seq_max
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        cparams.kv_unified = not streams
        cparams.flash_attn_type = flash_attn_type(flash_attn)
        cparams.no_perf = True
        self.ctx = ll.llama_init_from_model(nm.model, cparams)
        if not self.ctx:
            if self._owns_model:
                nm.close()
            raise NativeError(
                f"llama.cpp could not create a context (n_ctx={n_ctx}, n_seq_max={n_seq_max})"
            )
        self.model = nm.model
        self.vocab = nm.vocab
        self.n_vocab = nm.n_vocab
        self.chat_template = nm.chat_template
        self.description = nm.description
        self.streams = streams
        self.n_ctx = ll.llama_n_ctx(self.ctx)
        self.n_ctx_seq = ll.llama_n_ctx_seq(self.ctx)
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.memory = ll.llama_get_memory(self.ctx)
        self._batch = ll.llama_batch_init(n_batch, 0, 1)
        self._n = 0
        self._map = StreamMap(n_seq_max) if streams else None
        # streams: the batch as added (token, pos, slot, logits) and each entry's row
        self._entries: list[tuple[int, int, int, bool]] = []
        self._row: list[int] = []

    def close(self) -> None:
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self._owns_model:
            self.native_model.close()
        self.model = None

    # ---- text <-> tokens (the model's) -----------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.native_model.tokenize(text, add_special)

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for; special tokens (end of turn…) render as nothing."""
        return self.native_model.piece(token)

    def is_eog(self, token: int) -> bool:
        return self.native_model.is_eog(token)

    @property
    def eog_ids(self) -> np.ndarray:
        """Every end-of-generation token id."""
        return self.native_model.eog_ids

    def apply_chat_template(self, messages: Sequence[Message]) -> str:
        return self.native_model.apply_chat_template(messages)

    # ---- KV memory -------------------------------------------------------------------

    def seq_copy(self, src: int, dst: int, n_tokens: int) -> None:
        """Give ``dst`` the KV of ``src``'s first ``n_tokens`` tokens (``dst`` is empty)."""
        if self._map is None:
            ll.llama_memory_seq_cp(self.memory, src, dst, 0, n_tokens)
            return
        a, b = self._map.stream(src), self._map.stream(dst)
        ll.llama_memory_seq_cp(self.memory, a, b, -1, -1)
        ll.llama_memory_seq_rm(self.memory, b, n_tokens, -1)

    def memory_clear(self) -> None:
        """Empty the whole KV cache and reset its placement to the first cell."""
        ll.llama_memory_clear(self.memory, True)
        if self._map is not None:
            self._map.reset()

    def seq_remove(self, seq: int, start: int = 0) -> None:
        stream = seq if self._map is None else self._map.stream(seq)
        ll.llama_memory_seq_rm(self.memory, stream, start, -1)

    def _stream_empty(self, stream: int) -> bool:
        return int(ll.llama_memory_seq_pos_max(self.memory, stream)) < 0

    def _gather_streams(self) -> None:
        """Move the batch's slots onto consecutive streams, then fill the C batch sorted
        by stream and position (one micro-batch), remembering each entry's row."""
        assert self._map is not None
        for op, src, dst in self._map.gather({e[2] for e in self._entries}, self._stream_empty):
            if op == "copy":
                ll.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
            else:
                ll.llama_memory_seq_rm(self.memory, src, -1, -1)
        stream = self._map.stream
        order = sorted(
            range(self._n), key=lambda i: (stream(self._entries[i][2]), self._entries[i][1])
        )
        self._row = [0] * self._n
        b = self._batch
        for row, i in enumerate(order):
            token, pos, slot, want = self._entries[i]
            b.token[row] = token
            b.pos[row] = pos
            b.n_seq_id[row] = 1
            b.seq_id[row][0] = stream(slot)
            b.logits[row] = want
            self._row[i] = row

    # ---- batches ---------------------------------------------------------------------

    def batch_clear(self) -> None:
        self._n = 0
        self._entries.clear()

    @property
    def batch_size(self) -> int:
        return self._n

    def batch_add(self, token: int, pos: int, seq: int, want_logits: bool) -> int:
        """Add one token; return its index in the batch (for reading its logits)."""
        if self._map is not None:
            self._entries.append((token, pos, seq, want_logits))
            self._n += 1
            return self._n - 1
        b, i = self._batch, self._n
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = want_logits
        self._n += 1
        return i

    def decode(self) -> int:
        """Run the batch. 0 = ok, 1 = no room in the KV cache (nothing was applied)."""
        if self._map is not None:
            self._gather_streams()
        self._batch.n_tokens = self._n
        return int(ll.llama_decode(self.ctx, self._batch))

    def logits(self, index: int) -> np.ndarray:
        """The logits of the token that ``batch_add`` put at ``index``."""
        row = index if self._map is None else self._row[index]
        ptr = ll.llama_get_logits_ith(self.ctx, row)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
