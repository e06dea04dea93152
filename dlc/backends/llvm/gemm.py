"""A register-blocked matrix product in generated code, for products too small for BLAS.

``gemm(M, N, K, A, a_row, a_col, B, b_row, C, c_row)`` computes
C[M, N] = A[M, K] B[K, N] for any strides of A, with B and C contiguous
along N (an einsum whose B is not gets B packed, transposed, first). One
copy per element type serves every product of a module, so the module
compiles fast.

The tile is ``ROWS`` rows of C by one vector of columns: each step along K loads
one vector of B, broadcasts ``ROWS`` elements of A and does ``ROWS``
vector multiply-adds into accumulators that stay in registers. Columns
beyond the last whole tile, and rows beyond the last whole block of rows,
are done with narrower tiles (one column, one row).
"""

from __future__ import annotations

from llvmlite import ir

from dlc.backends.llvm.kernels import ARITH, I64, Kernel

I32 = ir.IntType(32)
PTR = ir.PointerType()
#: Rows of C per tile: 6 independent chains of multiply-adds keep the FMA units busy, and their
#: accumulators plus a vector of B fit in 16 registers of 256 bits (or 32 of 512).
ROWS = 6
#: Bits of C's row per tile: one 512-bit vector (LLVM splits it where the CPU's are narrower).
VECTOR_BITS = 512


def gemm_function(module: ir.Module, ty: ir.Type) -> ir.Function:
    """The module's ``gemm.<f64|f32>``, defined on first request."""
    name = f"gemm.{'f64' if isinstance(ty, ir.DoubleType) else 'f32'}"
    if name in module.globals:
        return module.globals[name]
    args = [I64, I64, I64, PTR, I64, I64, PTR, I64, PTR, I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    for index in (3, 6, 8):
        fn.args[index].add_attribute("noalias")
    k = Kernel(fn, ty)
    Tiles(k, fn.args).product()
    k.b.ret_void()
    return fn


class Tiles:
    """Writes the body of ``gemm``: blocks of rows, and in each, tiles across the columns."""

    def __init__(self, k: Kernel, args: list[ir.Argument]) -> None:
        self.k, self.bld = k, k.b
        self.m, self.n, self.depth, self.a, self.a_row, self.a_col, self.b, self.b_row, self.c, self.c_row = (
            args
        )

    def _const(self, value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def product(self) -> None:
        bld, k, m = self.bld, self.k, self.m
        blocks = bld.udiv(m, self._const(ROWS))
        with k.loop(blocks, "ti") as block:
            self._row_tiles(bld.mul(block, self._const(ROWS)), ROWS)
        done = bld.mul(blocks, self._const(ROWS))
        with k.loop(bld.sub(m, done), "tr") as extra:
            self._row_tiles(bld.add(done, extra), 1)

    def _row_tiles(self, row0: ir.Value, rows: int) -> None:
        """Rows row0 .. row0 + rows - 1 of C: whole tiles across N, then one column at a time."""
        bld, k = self.bld, self.k
        width = VECTOR_BITS // (64 if isinstance(k.ty, ir.DoubleType) else 32)
        tiles = bld.udiv(self.n, self._const(width))
        with k.loop(tiles, "tj") as j:
            self._tile(row0, rows, bld.mul(j, self._const(width)), width)
        done = bld.mul(tiles, self._const(width))
        with k.loop(bld.sub(self.n, done), "tc") as extra:
            self._tile(row0, rows, bld.add(done, extra), 1)

    def _tile(self, row0: ir.Value, rows: int, col0: ir.Value, lanes: int) -> None:
        """C[row0 : row0 + rows, col0 : col0 + lanes] = the sum over K of A's column times B's row."""
        bld, k = self.bld, self.k
        vty = ir.VectorType(k.ty, lanes)
        zero = ir.Constant(vty, [ir.Constant(k.ty, 0.0)] * lanes)
        accs = [k.variable("tile", zero) for _ in range(rows)]
        row_index = [bld.add(row0, self._const(r)) for r in range(rows)]
        a_rows = [self._at(self.a, bld.mul(i, self.a_row)) for i in row_index]
        with k.loop(self.depth, "tk") as kk:
            vector = bld.load(
                self._at(self.b, bld.add(bld.mul(kk, self.b_row), col0)), typ=vty, align=k.align
            )
            a_offset = bld.mul(kk, self.a_col)
            for acc, a_row in zip(accs, a_rows, strict=True):
                scalar = bld.load(self._at(a_row, a_offset), typ=k.ty, align=k.align)
                product = bld.fmul(self._splat(scalar, lanes), vector, flags=ARITH)
                bld.store(bld.fadd(bld.load(acc, typ=vty), product, flags=ARITH), acc)
        for acc, i in zip(accs, row_index, strict=True):
            target = self._at(self.c, bld.add(bld.mul(i, self.c_row), col0))
            bld.store(bld.load(acc, typ=vty), target, align=k.align)

    def _at(self, base: ir.Value, offset: ir.Value) -> ir.Value:
        return self.bld.gep(base, [offset], inbounds=True, source_etype=self.k.ty)

    def _splat(self, scalar: ir.Value, lanes: int) -> ir.Value:
        """A vector of ``lanes`` copies of ``scalar``."""
        vty = ir.VectorType(self.k.ty, lanes)
        one = self.bld.insert_element(ir.Constant(vty, ir.Undefined), scalar, ir.Constant(I32, 0))
        mask = ir.Constant(ir.VectorType(I32, lanes), [0] * lanes)
        return self.bld.shuffle_vector(one, ir.Constant(vty, ir.Undefined), mask)
