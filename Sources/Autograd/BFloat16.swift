/// bfloat16: float32's sign, exponent and top 7 mantissa bits. Conversions round to nearest,
/// ties to even, as PyTorch's `tensor.to(torch.bfloat16)` (a NaN stays a NaN). Used where
/// values are stored (safetensors) or sent (`parallel.comm_dtype: bf16`) in half the bytes.
package enum BFloat16 {
    package static func bits(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounding = 0x7FFF + ((b >> 16) & 1)
        return UInt16((b &+ rounding) >> 16)
    }

    package static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// The nearest bfloat16 value, as a float32.
    package static func rounded(_ x: Float) -> Float { float(bits(x)) }

    package static func round(_ p: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { p[i] = rounded(p[i]) }
    }

    package static func pack(_ p: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<UInt16>) {
        for i in 0..<count { out[i] = bits(p[i]) }
    }

    package static func unpack(_ p: UnsafePointer<UInt16>, count: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count { out[i] = float(p[i]) }
    }
}
