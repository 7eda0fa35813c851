import Foundation
import Testing
@testable import Data

@Suite struct ShardTests {
    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-shards-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func prepareWritesShardsTheLoaderServesDeterministically() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = (0..<300).map { #"{"text": "document \#($0): \#(String(repeating: "abc ", count: $0 % 17 + 1))"}"# }
        try lines.joined(separator: "\n").write(toFile: "\(dir)/in.jsonl", atomically: true, encoding: .utf8)
        try "a plain text file is one document".write(toFile: "\(dir)/in.txt", atomically: true, encoding: .utf8)
        var o = Prepare.Options(inputs: ["\(dir)/in.jsonl", "\(dir)/in.txt"], output: "\(dir)/out")
        o.vocabSize = 300
        o.shardTokens = 1000  // several shards
        let index = try Prepare.run(o)
        #expect(index.documents == 301 && index.shards.count > 3)
        let loader = try ShardLoader(dir: "\(dir)/out")
        #expect(loader.tokenCount == index.tokens)
        // The stream decodes back to the documents joined by EOS.
        let tok = try Tokenizer(path: "\(dir)/out/tokenizer.json")
        let all = (0..<loader.tokenCount).map { loader.token($0) }
        #expect(all.filter { $0 == index.eosID }.count == 301)
        #expect(try tok.decode(Array(all.prefix(while: { $0 != index.eosID }))) == "document 0: abc ")
        // Rows: a pure function of (seed, row); held-out windows never served for training.
        let a = loader.rows(first: 5, count: 7, length: 33, seed: 3, heldOut: 4)
        #expect(a == loader.rows(first: 5, count: 7, length: 33, seed: 3, heldOut: 4))
        #expect(a != loader.rows(first: 5, count: 7, length: 33, seed: 4, heldOut: 4))
        #expect(Array(loader.rows(first: 0, count: 12, length: 33, seed: 3, heldOut: 4)[(5 * 33)...]) == a)
        let n = loader.windows(length: 33)
        let trainWindows = Set((0..<(n - 4)).map { ShardLoader.permute($0, n: n - 4, seed: 3) })
        #expect(trainWindows == Set(0..<(n - 4)), "one epoch visits every training window once")
    }

    @Test func badInputNamesFileAndLineAndLeavesNothing() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n".write(toFile: "\(dir)/bad.jsonl", atomically: true, encoding: .utf8)
        do {
            try Prepare.run(Prepare.Options(inputs: ["\(dir)/bad.jsonl"], output: "\(dir)/out"))
            Issue.record("accepted a line without text")
        } catch let e as TokenizerError {
            #expect(e.description.contains("bad.jsonl:2") && e.description.contains("\"text\""), "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out") && !FileManager.default.fileExists(atPath: "\(dir)/out.tmp"))
        #expect(throws: TokenizerError.self) { try Prepare.run(Prepare.Options(inputs: ["\(dir)/missing.txt"], output: "\(dir)/o2")) }
    }

    @Test func truncatedShardIsReported() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "some text to tokenize into a shard".write(toFile: "\(dir)/in.txt", atomically: true, encoding: .utf8)
        var o = Prepare.Options(inputs: ["\(dir)/in.txt"], output: "\(dir)/out")
        o.vocabSize = 280
        try Prepare.run(o)
        let shard = "\(dir)/out/shard-00000.bin"
        let data = try Data(contentsOf: URL(fileURLWithPath: shard))
        try data.prefix(data.count - 4).write(to: URL(fileURLWithPath: shard))
        do {
            _ = try ShardLoader(dir: "\(dir)/out")
            Issue.record("accepted a truncated shard")
        } catch let e as TokenizerError {
            #expect(e.description.contains("shard-00000.bin") && e.description.contains("truncated"))
        }
    }

    /// A data directory from elsewhere: a token past the vocabulary (it would index past the
    /// embedding), an index whose total disagrees with its shards, and a shard named outside
    /// the directory are each refused when the directory is opened.
    @Test func aHostileDataDirectoryIsRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "some text to tokenize into a shard".write(toFile: "\(dir)/in.txt", atomically: true, encoding: .utf8)
        var o = Prepare.Options(inputs: ["\(dir)/in.txt"], output: "\(dir)/out")
        o.vocabSize = 280
        try Prepare.run(o)
        let shard = "\(dir)/out/shard-00000.bin", indexPath = "\(dir)/out/index.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: shard)), index = try Data(contentsOf: URL(fileURLWithPath: indexPath))
        func expectRefused(_ words: String) {
            do {
                _ = try ShardLoader(dir: "\(dir)/out")
                Issue.record("accepted: \(words)")
            } catch let e as TokenizerError {
                #expect(e.description.contains(words), "\(e)")
            } catch { Issue.record("\(error)") }
        }
        var bad = original
        bad.replaceSubrange(4..<8, with: withUnsafeBytes(of: UInt32(1_000_000).littleEndian) { Data($0) })
        try bad.write(to: URL(fileURLWithPath: shard))
        expectRefused("token 1 is id 1000000")
        try original.write(to: URL(fileURLWithPath: shard))
        var json = try JSONSerialization.jsonObject(with: index) as! [String: Any]
        json["tokens"] = (json["tokens"] as! Int) + 5
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: indexPath))
        expectRefused("its shards hold")
        json = try JSONSerialization.jsonObject(with: index) as! [String: Any]
        var shards = json["shards"] as! [[String: Any]]
        shards[0]["file"] = "../in.txt"
        json["shards"] = shards
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: indexPath))
        expectRefused("expected a file name in the same directory")
    }
}
