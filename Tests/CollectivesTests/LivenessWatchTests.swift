import Foundation
import Glibc
import Testing
@testable import Collectives

/// The liveness watch's pieces that need no second process: whom a rank watches, where its
/// datagrams go, what it tells the others, and the thread itself between two watches in this
/// process (docs/design.md §11, "Liveness"). Losing a real rank is tested across the simulated cluster
/// (VirtualClusterTests) and under mpirun (MultiRankTests).
@Suite struct LivenessWatchTests {
    @Test func everyRankIsWatchedBothWaysAndSmallJobsWatchEveryone() {
        for size in [2, 3, 5, 17, 18, 40, 1000] {
            let watched = (0..<size).map { LivenessWatch.watched(rank: $0, size: size) }
            for r in 0..<size {
                #expect(!watched[r].contains(r))
                #expect(watched[r].count == min(size - 1, 2 * LivenessWatch.reach), "size \(size) rank \(r): \(watched[r])")
                for p in watched[r] { #expect(watched[p].contains(r), "size \(size): \(r) watches \(p) but not back") }
            }
        }
    }

    @Test func aCardSurvivesTheAllgatherAndDatagramsTakeASharedSubnet() {
        let a = LivenessWatch.Card(port: 40001, nonce: 0xDEAD_BEEF_0123_4567, host: "node-a.example.org",
                                   addresses: [(ip("10.0.0.1"), ip("255.255.255.0")), (ip("172.17.0.1"), ip("255.255.0.0"))])
        let back = LivenessWatch.Card(decoding: a.encoded[...])
        #expect(back.port == 40001 && back.nonce == a.nonce && back.host == a.host)
        #expect(back.addresses.map(\.address) == a.addresses.map(\.address) && back.addresses.map(\.mask) == a.addresses.map(\.mask))

        let b = LivenessWatch.Card(port: 40002, nonce: 1, host: "node-b", addresses: [(ip("192.168.9.9"), ip("255.255.255.0")), (ip("10.0.0.2"), ip("255.255.255.0"))])
        // To another host: its address on the subnet both are on, not the other.
        #expect(LivenessWatch.destinations(from: a, to: b).map(\.sin_addr.s_addr) == [ip("10.0.0.2")])
        #expect(LivenessWatch.destinations(from: a, to: b).allSatisfy { $0.sin_port == UInt16(40002).bigEndian })
        // Same host: loopback. No shared subnet: every address.
        let c = LivenessWatch.Card(port: 40003, nonce: 1, host: "node-a.example.org", addresses: [])
        #expect(LivenessWatch.destinations(from: a, to: c).map(\.sin_addr.s_addr) == [ip("127.0.0.1")])
        let d = LivenessWatch.Card(port: 40004, nonce: 1, host: "node-d", addresses: [(ip("192.168.1.4"), ip("255.255.255.0"))])
        #expect(LivenessWatch.destinations(from: a, to: d).map(\.sin_addr.s_addr) == [ip("192.168.1.4")])
    }

    /// Two watches in this process, as ranks 0 and 1 on one host: they keep each other alive
    /// while both beat, and when one stops, the other reports it lost after `timeout`.
    @Test func aPeerThatStopsBeatingIsReportedLostAfterTheTimeout() throws {
        let timeout = 0.6
        let sockets = try (0..<2).map { _ in try LivenessWatch.openSocket() }
        let cards = try sockets.map { LivenessWatch.Card(port: try LivenessWatch.boundPort($0), nonce: 77, host: "here", addresses: []) }
        let lost = Box()
        let watches = (0..<2).map { r in
            LivenessWatch(rank: r, cards: cards, socket: sockets[r], timeout: timeout) { message in lost.set(r, message) }
        }
        for w in watches { Thread { w.run() }.start() }
        usleep(1_500_000)   // 2.5 timeouts: both beat, nobody is lost
        #expect(lost.messages.isEmpty, "\(lost.messages)")
        watches[1].stop()
        let stopped = Date()
        while lost.messages.isEmpty && Date().timeIntervalSince(stopped) < 5 { usleep(20_000) }
        let after = Date().timeIntervalSince(stopped)
        watches[0].stop()
        #expect(lost.messages.keys.sorted() == [0], "\(lost.messages)")
        #expect(after > timeout * 0.9 && after < timeout + 1.5, "reported \(after) s after the peer stopped")
        #expect(lost.messages[0]?.contains("rank 0 of 2 (host here): lost rank 1 (host here): no heartbeat") == true, "\(lost.messages)")
        for s in sockets { close(s) }
    }

    func ip(_ text: String) -> UInt32 {
        var a = in_addr()
        inet_pton(AF_INET, text, &a)
        return a.s_addr
    }

    final class Box: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [Int: String] = [:]
        func set(_ r: Int, _ m: String) { lock.lock(); stored[r] = m; lock.unlock() }
        var messages: [Int: String] { lock.lock(); defer { lock.unlock() }; return stored }
    }
}
