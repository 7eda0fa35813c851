import Foundation
import Testing
@testable import Autograd

@Suite struct FastMathTests {
    @Test func fastExpIsWithinTwoUlp() {
        var worst = 0.0
        var x: Float = -87
        while x < 88 {
            let ref = Foundation.exp(Double(x))
            let ulp = Double(Float(ref).ulp)
            worst = Swift.max(worst, abs(Double(fastExp(x)) - ref) / ulp)
            x += 0.0137
        }
        #expect(worst <= 2, "fastExp is \(worst) ulp off")
        #expect(fastExp(0) == 1)
        #expect(fastExp(-1000) < 1e-37 && fastExp(-1000) >= 0)
        #expect(fastExp(1000).isFinite)
    }

    @Test func vectorReductions() {
        let a = (0..<37).map { Float($0) * 0.5 - 3 }, b = (0..<37).map { Float(($0 * 7) % 5) }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                #expect(abs(vsum(pa.baseAddress!, 37) - a.reduce(0, +)) < 1e-4)
                #expect(abs(vdot(pa.baseAddress!, pb.baseAddress!, 37) - zip(a, b).map(*).reduce(0, +)) < 1e-3)
                #expect(vmax(pa.baseAddress!, 37) == 15)
                #expect(vmax(pb.baseAddress!, 3) == 4)
            }
        }
    }
}
