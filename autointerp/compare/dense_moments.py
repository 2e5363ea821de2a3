"""The correlation pass as blocked dense products, for a GPU (``correlate(device="cuda")``).

On a GPU the sparse pass's scattered adds waste the hardware; the dense product of a chunk of units is
what tensor cores do best. Both models' CSR matrices are copied to the device once; each chunk of paired
units is densified there ([chunk, d_a] and [chunk, d_b]), *centred* by the feature means (computed first,
in float64 on the device, so the product sums covariances directly and ``n S_ij - S_i S_j`` never
cancels catastrophically), and multiplied into one float32 accumulator [d_a, d_b] on the device:

- ``precision="fp32"``: plain float32 products;
- ``"tf32"`` (default on CUDA): float32 inputs rounded to TF32 by the tensor cores, fp32 accumulation;
- ``"bf16"``: bfloat16 inputs, fp32 accumulation (``addmm`` with ``out_dtype``; where that is missing,
  each chunk's product is formed in bf16 and added in fp32).

The sums and sums of squares (hence the means, variances and the dead-feature rule) are float64 sums in
nonzero order, as in the sparse pass, and go through its ``feature_spread``: both passes exclude the same
features (on a GPU the summation order may differ by rounding, ~1e-16 relative, against a 1e-12 rule). On
the CPU (``device="cpu"``) the same code runs in float32 — that is how the tests exercise it without a GPU.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
import torch

from autointerp.progress import progress_bar

PRECISIONS = ("fp32", "tf32", "bf16")
DENSE_CHUNK_BYTES = 1 << 30  # dense [chunk, d_a + d_b] float32 block per step (~1 GiB)


class _DeviceCSR:
    """A CSR matrix on the device that densifies any list of its rows."""

    def __init__(self, m: sp.csr_matrix, device: torch.device):
        self.width = m.shape[1]
        self.indptr = torch.from_numpy(m.indptr).to(device).long()  # copied as stored, widened there
        self.indices = torch.from_numpy(m.indices).to(device).long()
        self.data = torch.from_numpy(m.data).to(device).float()

    def sums(self, rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(sum, sum of squares) per column over the rows ``rows`` (which may repeat), float64."""
        weight = torch.bincount(rows, minlength=len(self.indptr) - 1).double()
        per_nnz = torch.repeat_interleave(weight, self.indptr.diff(), output_size=len(self.data))
        data = self.data.double()
        s = torch.zeros(self.width, dtype=torch.float64, device=rows.device).index_add_(0, self.indices, per_nnz * data)
        q = torch.zeros(self.width, dtype=torch.float64, device=rows.device).index_add_(0, self.indices, per_nnz * data * data)
        return s.cpu().numpy(), q.cpu().numpy()

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())  # one sync per chunk
        out = torch.zeros(len(rows), self.width, dtype=torch.float32, device=rows.device)
        if total == 0:
            return out
        row_of = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths, output_size=total)
        offsets = torch.cumsum(lengths, 0) - lengths
        pos = starts[row_of] + torch.arange(total, device=rows.device) - offsets[row_of]
        out.index_put_((row_of, self.indices[pos]), self.data[pos], accumulate=True)
        return out


@contextlib.contextmanager
def _matmul_precision(precision: str):
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _add_product(acc: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor, precision: str) -> None:
    """acc += xa^T xb with fp32 accumulation at the requested input precision."""
    if precision != "bf16":
        acc.addmm_(xa.T, xb)
        return
    xa, xb = xa.to(torch.bfloat16), xb.to(torch.bfloat16)
    if acc.device.type == "cuda":
        try:
            acc.copy_(torch.addmm(acc, xa.T, xb, out_dtype=torch.float32))
            return
        except (TypeError, RuntimeError):  # a torch without addmm(out_dtype=...)
            acc.add_(torch.mm(xa.T, xb).float())
            return
    acc.addmm_(xa.T.float(), xb.float())  # CPU: bf16-rounded inputs, fp32 products


def dense_chunk_rows(d_a: int, d_b: int, budget: int = DENSE_CHUNK_BYTES) -> int:
    """Units per dense chunk: the two float32 blocks fit ``budget`` bytes (at least 256 units)."""
    return max(256, budget // (4 * (d_a + d_b)))


def dense_covariance(a: sp.csr_matrix, b: sp.csr_matrix, rows_a: np.ndarray, rows_b: np.ndarray, *, device: str = "cuda",
                     precision: str = "tf32", chunk_rows: int | None = None, progress: bool = True,
                     label: str = "correlate") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """(sum_a, sumsq_a, sum_b, sumsq_b, centred cross [d_a, d_b] float32 on ``device``) over paired units."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    a, b = a.tocsr(), b.tocsr()
    rows_a, rows_b = np.asarray(rows_a, np.int64), np.asarray(rows_b, np.int64)
    n = len(rows_a)
    dev = torch.device(device)
    ga, gb = _DeviceCSR(a, dev), _DeviceCSR(b, dev)
    ra, rb = torch.from_numpy(rows_a).to(dev), torch.from_numpy(rows_b).to(dev)
    (s_a, q_a), (s_b, q_b) = ga.sums(ra), gb.sums(rb)
    mean_a = torch.from_numpy(s_a / max(n, 1)).to(dev, torch.float32)
    mean_b = torch.from_numpy(s_b / max(n, 1)).to(dev, torch.float32)
    acc = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float32, device=dev)
    step = chunk_rows or dense_chunk_rows(a.shape[1], b.shape[1])
    with _matmul_precision(precision), torch.inference_mode(), \
            progress_bar(f"compare: {label} ({dev.type}, {precision})", n, "units", enabled=progress) as advance:
        for start in range(0, n, step):
            xa = ga.dense(ra[start : start + step]).sub_(mean_a)
            xb = gb.dense(rb[start : start + step]).sub_(mean_b)
            _add_product(acc, xa, xb, precision)
            advance(xa.shape[0])
    return s_a, q_a, s_b, q_b, acc


def pearson_from_covariance(n: int, cov_sum: torch.Tensor, std_a: np.ndarray, std_b: np.ndarray, block: int = 4096) -> np.ndarray:
    """Correlations [d_a, d_b] float32 from the centred cross sums, on the device in float64 blocks; the
    standard deviations (NaN for dead features) come from ``correlation.feature_spread``, as on the CPU."""
    dev = cov_sum.device
    inv_a = torch.from_numpy(1.0 / std_a).to(dev)  # NaN for dead features
    inv_b = torch.from_numpy(1.0 / std_b).to(dev)
    corr = np.empty(tuple(cov_sum.shape), dtype=np.float32)
    for i in range(0, cov_sum.shape[0], block):
        cov = cov_sum[i : i + block].double() / max(n, 1)
        corr[i : i + block] = (cov * inv_a[i : i + block, None] * inv_b[None, :]).clamp_(-1.0, 1.0).float().cpu().numpy()
    return corr
