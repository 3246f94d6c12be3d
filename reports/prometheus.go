package reports

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Prometheus renderer writes node_exporter textfile metrics (the text
// exposition format, version 0.0.4): every metric is a gauge named
// kata_cr_*, with HELP and TYPE lines, so that a DaemonSet can run the
// doctor on each node and let node_exporter's textfile collector publish
// the result.

// promMetric is one metric family: its samples share the name and type.
type promMetric struct {
	name, help string
	samples    []promSample
}

// promSample is one line of a family: its labels, in order, and its value.
type promSample struct {
	labels [][2]string
	value  float64
}

func (m *promMetric) add(value float64, labels ...string) {
	s := promSample{value: value}
	for i := 0; i+1 < len(labels); i += 2 {
		s.labels = append(s.labels, [2]string{labels[i], labels[i+1]})
	}
	m.samples = append(m.samples, s)
}

// renderPrometheus writes r as gauges. now is the time of the run. Every
// series is labelled with the target kind (host, guest, file) first, so
// that the host doctor's and the guest doctor's files in one textfile
// directory never hold the same series.
func renderPrometheus(w io.Writer, r *Report, now time.Time) error {
	var out strings.Builder
	target := [2]string{"target", r.Target.Kind}
	for _, m := range promMetrics(r, now) {
		if len(m.samples) == 0 {
			continue
		}
		fmt.Fprintf(&out, "# HELP %s %s\n# TYPE %s gauge\n", m.name, promEscapeHelp(m.help), m.name)
		for _, s := range m.samples {
			out.WriteString(m.name)
			out.WriteByte('{')
			for i, l := range append([][2]string{target}, s.labels...) {
				if i > 0 {
					out.WriteByte(',')
				}
				fmt.Fprintf(&out, "%s=\"%s\"", l[0], promEscapeLabel(l[1]))
			}
			out.WriteByte('}')
			out.WriteByte(' ')
			out.WriteString(strconv.FormatFloat(s.value, 'f', -1, 64))
			out.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// promMetrics turns the report into metric families, in a fixed order.
func promMetrics(r *Report, now time.Time) []*promMetric {
	info := &promMetric{name: "kata_cr_target_info", help: "Where the checks ran: kata-cr's version and command, the target's kernel release, CRIU version, architecture and accelerator. Always 1."}
	t := r.Target
	info.add(1, "kata_cr_version", r.Version, "command", r.Command,
		"kernel_release", t.KernelRelease, "criu_version", t.CRIUVersion, "arch", t.Arch, "accelerator", t.Accelerator)

	ts := &promMetric{name: "kata_cr_last_run_timestamp_seconds", help: "When kata-cr produced this report, in seconds since the Unix epoch."}
	ts.add(float64(now.Unix()))

	failed := &promMetric{name: "kata_cr_failed", help: "1 when a required check failed or the checkpoint did not succeed (kata-cr exits 3), else 0."}
	failed.add(promBool(r.Failed))

	tally := &promMetric{name: "kata_cr_findings", help: "Number of findings with each status."}
	for _, st := range []struct {
		s Status
		n int
	}{{Fail, r.Tally.Fail}, {Error, r.Tally.Error}, {Warn, r.Tally.Warn}, {Skip, r.Tally.Skip}, {Pass, r.Tally.Pass}} {
		tally.add(float64(st.n), "status", string(st.s))
	}

	findings := &promMetric{name: "kata_cr_finding", help: "One series per check result: the number of findings with this check ID, category, level and status (1 unless a check reports several items under one ID)."}
	for _, k := range findingKeys(r.Findings) {
		findings.add(float64(k.n), "id", k.id, "category", k.category, "level", string(k.level), "status", string(k.status))
	}

	families := []*promMetric{info, ts, failed, tally, findings}
	families = append(families, predictionMetrics(r)...)
	if c := r.Checkpoint; c != nil {
		families = append(families, checkpointMetrics(c)...)
	}
	return families
}

// findingKey is the label set of one kata_cr_finding series and how many
// findings share it.
type findingKey struct {
	id, category string
	level        Level
	status       Status
	n            int
}

// findingKeys counts the findings per label set, in the report's order of
// first appearance (worst first after Finish): two series must never have
// the same labels.
func findingKeys(fs []Finding) []findingKey {
	var keys []findingKey
	index := map[[4]string]int{}
	for _, f := range fs {
		k := [4]string{f.ID, f.Category, string(f.Level), string(f.Status)}
		if i, ok := index[k]; ok {
			keys[i].n++
			continue
		}
		index[k] = len(keys)
		keys = append(keys, findingKey{id: f.ID, category: f.Category, level: f.Level, status: f.Status, n: 1})
	}
	return keys
}

// predictionMetrics are the prediction before any fix (stage "preflight")
// and, when fixes were applied, after them (stage "plan").
func predictionMetrics(r *Report) []*promMetric {
	will := &promMetric{name: "kata_cr_prediction_dump_will_succeed", help: "1 when the checks predict that a plain CRIU dump (no extra options) succeeds."}
	with := &promMetric{name: "kata_cr_prediction_succeeds_with_options", help: "1 when the checks predict that a CRIU dump with the recommended options succeeds."}
	tree := &promMetric{name: "kata_cr_prediction_tree_dumpable", help: "1 when the process tree and its mounts are dumpable (with the recommended options)."}
	env := &promMetric{name: "kata_cr_prediction_environment_ready", help: "1 when the machine (kernel, CRIU, privileges) is ready for CRIU."}
	blocked := &promMetric{name: "kata_cr_prediction_blocked_by", help: "The findings that make a plain dump fail, one series each (always 1)."}
	for _, p := range []struct {
		stage string
		p     *Prediction
	}{{"preflight", r.Prediction}, {"plan", r.Plan}} {
		if p.p == nil {
			continue
		}
		will.add(promBool(p.p.DumpWillSucceed), "stage", p.stage)
		with.add(promBool(p.p.WithOptions), "stage", p.stage)
		tree.add(promBool(p.p.TreeDumpable), "stage", p.stage)
		env.add(promBool(p.p.EnvironmentReady), "stage", p.stage)
		ids := slices.Clone(p.p.BlockedBy)
		sort.Strings(ids)
		for _, id := range slices.Compact(ids) {
			blocked.add(1, "stage", p.stage, "finding", id)
		}
	}
	return []*promMetric{will, with, tree, env, blocked}
}

// checkpointMetrics are the outcome of a checkpoint, labelled with its
// workload.
func checkpointMetrics(c *Checkpoint) []*promMetric {
	wl := []string{"workload", c.Workload}
	gauge := func(name, help string, v float64) *promMetric {
		m := &promMetric{name: name, help: help}
		m.add(v, wl...)
		return m
	}
	out := []*promMetric{
		gauge("kata_cr_checkpoint_ok", "1 when everything the checkpoint asked for (dump, and restore and verification when requested) succeeded.", promBool(c.OK())),
		gauge("kata_cr_checkpoint_dump_ok", "1 when CRIU's dump succeeded.", promBool(c.DumpOK)),
		gauge("kata_cr_checkpoint_dump_duration_seconds", "How long CRIU's dump took.", c.DumpSeconds),
		gauge("kata_cr_checkpoint_image_size_bytes", "Size of the checkpoint's images on the host.", float64(c.ImageBytes)),
	}
	if c.WantRestore {
		out = append(out,
			gauge("kata_cr_checkpoint_restore_ok", "1 when CRIU's restore in a fresh guest succeeded.", promBool(c.RestoreOK)),
			gauge("kata_cr_checkpoint_restore_duration_seconds", "How long CRIU's restore took.", c.RestoreSeconds),
			gauge("kata_cr_checkpoint_verified", "1 when the restored workload was verified to carry on.", promBool(c.Verified)))
	}
	if c.PredictionMatched != nil {
		out = append(out, gauge("kata_cr_checkpoint_prediction_matched", "1 when the preflight prediction agreed with what CRIU did.", promBool(*c.PredictionMatched)))
	}
	return out
}

func promBool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promEscapeLabel escapes a label value as the exposition format wants:
// backslash, double quote and line feed. Invalid UTF-8 becomes U+FFFD.
func promEscapeLabel(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// promEscapeHelp escapes HELP text: backslash and line feed.
func promEscapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
