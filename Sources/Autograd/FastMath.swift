// @inlinable: the expert kernels (DeepSeek, Parallel) call these per element; without a body
// to inline across modules each would be a call per element and those loops would stay scalar.

/// A branch-free exp for the fused kernels' inner loops. libm's expf is a call per element,
/// which keeps those loops scalar; this one is plain arithmetic that LLVM vectorises.
/// Range reduction x = n·ln2 + r with ln2 split in two (Cody–Waite), then Cephes' degree-6
/// polynomial for e^r on |r| ≤ ln2/2: within 2 ulp of the correctly rounded result over the
/// float range used here (checked against Float64 exp in `FastMathTests`). Inputs below −87.3
/// return ≈1e-38 (and above 88 return e^88) rather than a subnormal or zero, which no sum or product here can tell apart.
@inlinable @inline(__always)
package func fastExp(_ x: Float) -> Float {
    let c = Swift.min(Swift.max(x, -87.3), 88.0)  // keeps 2^n a normal float
    // Round to nearest by the 1.5·2^23 trick (no call, vectorisable).
    let shifter: Float = 12_582_912
    let n = (c * 1.442_695_04 + shifter) - shifter
    let r = c - n * 0.693_359_375 + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * r * r + r + 1
    let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
    return p * scale
}

/// 1 / (1 + e^−x) on `fastExp`.
@inlinable @inline(__always)
package func fastSigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

/// SwiGLU's activation silu(h)·u, the one formula `swiglu`, `swigluLinear` and the experts'
/// kernels use (so their bits agree).
@inlinable @inline(__always)
package func swigluValue(gate h: Float, up u: Float) -> Float { h * fastSigmoid(h) * u }

/// The gradients of silu(h)·u for an output gradient g: d/dh = g·u·s·(1 + h(1 − s)) and
/// d/du = g·h·s, with s = sigmoid(h).
@inlinable @inline(__always)
package func swigluGradients(_ g: Float, gate h: Float, up u: Float) -> (gate: Float, up: Float) {
    let s = fastSigmoid(h)
    return (g * u * s * (1 + h * (1 - s)), g * h * s)
}

// Reductions over float rows with 16 lanes of partial sums: a scalar loop is bound by the
// latency of one dependent add per element, since LLVM may not reassociate float sums.

@inlinable @inline(__always)
package func vsum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var j = 0
    let raw = UnsafeRawPointer(p)
    while j + 16 <= n {
        acc += raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
        j += 16
    }
    var s = acc.sum()
    while j < n { s += p[j]; j += 1 }
    return s
}

@inlinable @inline(__always)
package func vdot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var j = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while j + 16 <= n {
        acc += ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
        j += 16
    }
    var s = acc.sum()
    while j < n { s += a[j] * b[j]; j += 1 }
    return s
}

/// Σ a·b·c, with `vdot`'s 16 lanes of partial sums.
@inlinable @inline(__always)
package func vdot3(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var j = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), rc = UnsafeRawPointer(c)
    while j + 16 <= n {
        acc += ra.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
            * rc.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
        j += 16
    }
    var s = acc.sum()
    while j < n { s += a[j] * b[j] * c[j]; j += 1 }
    return s
}

@inlinable @inline(__always)
package func vmax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = -Float.infinity
    var j = 0
    if n >= 16 {
        let raw = UnsafeRawPointer(p)
        var acc = SIMD16<Float>(repeating: -.infinity)
        while j + 16 <= n {
            // A lane select: the stdlib's pointwiseMax is a per-lane loop that stays scalar.
            let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
            acc.replace(with: v, where: v .> acc)
            j += 16
        }
        m = acc.max()
    }
    while j < n { if p[j] > m { m = p[j] }; j += 1 }
    return m
}
