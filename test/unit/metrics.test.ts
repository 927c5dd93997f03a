import { describe, expect, it } from "vitest";
import { bucketOf, formatValue, histogramSamples, renderExposition } from "../../broker/metrics.js";
import { parsePrometheusText, sampleValue } from "./prometheus-parser.js";

describe("renderExposition", () => {
  it("writes HELP, TYPE and samples that a strict parser reads back", () => {
    const text = renderExposition([
      {
        name: "q_depth",
        help: "Queue depth\nper type \\ priority",
        type: "gauge",
        samples: [{ labels: { worktype: 'a"b\\c\nd', priority: "-1" }, value: 3 }],
      },
      { name: "done_total", help: "Done.", type: "counter", samples: [{ value: 7 }] },
      {
        name: "wait_seconds",
        help: "Wait.",
        type: "histogram",
        samples: histogramSamples([0.5, 1], [1, 0, 2], 10.25, { worktype: "sh" }),
      },
    ]);
    expect(text).toBe(
      [
        "# HELP q_depth Queue depth\\nper type \\\\ priority",
        "# TYPE q_depth gauge",
        'q_depth{worktype="a\\"b\\\\c\\nd",priority="-1"} 3',
        "# HELP done_total Done.",
        "# TYPE done_total counter",
        "done_total 7",
        "# HELP wait_seconds Wait.",
        "# TYPE wait_seconds histogram",
        'wait_seconds_bucket{worktype="sh",le="0.5"} 1',
        'wait_seconds_bucket{worktype="sh",le="1"} 1',
        'wait_seconds_bucket{worktype="sh",le="+Inf"} 3',
        'wait_seconds_sum{worktype="sh"} 10.25',
        'wait_seconds_count{worktype="sh"} 3',
        "",
      ].join("\n"),
    );
    const parsed = parsePrometheusText(text);
    expect(sampleValue(parsed, "q_depth", { worktype: 'a"b\\c\nd' })).toBe(3);
    expect(sampleValue(parsed, "wait_seconds_count", { worktype: "sh" })).toBe(3);
    expect(parsed.get("wait_seconds")?.type).toBe("histogram");
  });

  it("refuses names and labels the format does not allow", () => {
    expect(() => renderExposition([{ name: "bad-name", help: "", type: "gauge", samples: [] }])).toThrow(
      /invalid metric name/,
    );
    expect(() =>
      renderExposition([{ name: "ok", help: "", type: "gauge", samples: [{ labels: { "x-y": "1" }, value: 1 }] }]),
    ).toThrow(/invalid label/);
    expect(() =>
      renderExposition([{ name: "ok", help: "", type: "gauge", samples: [{ labels: { __x: "1" }, value: 1 }] }]),
    ).toThrow(/invalid label/);
  });

  it.each([
    [1, "1"],
    [0.25, "0.25"],
    [Number.POSITIVE_INFINITY, "+Inf"],
    [Number.NEGATIVE_INFINITY, "-Inf"],
    [Number.NaN, "NaN"],
    [1e21, "1e+21"],
  ])("formats %d as %s", (value, text) => expect(formatValue(value)).toBe(text));

  it.each([
    [0, 0],
    [0.5, 0],
    [0.6, 1],
    [1, 1],
    [99, 2],
  ])("puts %d in bucket %d of [0.5, 1]", (value, bucket) => expect(bucketOf([0.5, 1], value)).toBe(bucket));
});

describe("the test's parser", () => {
  it.each([
    ["no newline at the end", "# TYPE a gauge\na 1"],
    ["a sample outside its family", "# TYPE a gauge\nb 1\n"],
    ["a bad value", "# TYPE a gauge\na one\n"],
    ["buckets not cumulative", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["no +Inf bucket", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ["a family twice", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n"],
  ])("refuses %s", (_what, text) => expect(() => parsePrometheusText(text)).toThrow());
});
