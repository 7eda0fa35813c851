/// The product of `dims`, or nil when a dimension is negative or the product overflows Int:
/// shapes come from files, and a wrapped element count would pass every later size check.
package func checkedProduct(_ dims: [Int]) -> Int? {
    var n = 1
    for d in dims {
        guard d >= 0 else { return nil }
        let (p, overflow) = n.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        n = p
    }
    return n
}

/// `a · b`, or nil on overflow.
package func checkedMultiply(_ a: Int, _ b: Int) -> Int? {
    let (p, overflow) = a.multipliedReportingOverflow(by: b)
    return overflow ? nil : p
}

/// `a + b`, or nil on overflow.
package func checkedAdd(_ a: Int, _ b: Int) -> Int? {
    let (s, overflow) = a.addingReportingOverflow(b)
    return overflow ? nil : s
}
