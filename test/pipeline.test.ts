import { describe, expect, it } from "vitest";
import { DedupCodec, Lz4Codec, XbzrleCodec, buildPipeline, disposePipeline, pipelineEntries } from "../src/index.js";

describe("pipeline from a spec", () => {
  it("one codec per named stage, raw naming none", () => {
    expect(pipelineEntries("raw")).toEqual([]);
    expect(pipelineEntries("dedup + xbzrle+lz4").map((e) => [e.name, e.role])).toEqual([["dedup", "dedup"], ["xbzrle", "delta"], ["lz4", "compress"]]);
    const stages = buildPipeline("dedup+xbzrle+lz4");
    try {
      expect(stages.dedup).toBeInstanceOf(DedupCodec);
      expect(stages.delta).toBeInstanceOf(XbzrleCodec);
      expect(stages.compress).toBeInstanceOf(Lz4Codec);
    } finally {
      disposePipeline(stages);
    }
    expect(() => stages.compress!.encodeBatch(undefined as never)).toThrow(/dispos/i);
  });

  it("a bad spec is a RangeError saying what is wrong, before any codec is made", () => {
    expect(() => pipelineEntries("lz4+")).toThrow(/empty stage/);
    expect(() => pipelineEntries("lz4+mecom")).toThrow(/two compress stages/);
    expect(() => pipelineEntries("zstd")).toThrow(/unknown codec 'zstd' \(have: .*lz4/);
  });
});
