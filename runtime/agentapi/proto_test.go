package agentapi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

func TestCodec(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	sent := []Event{
		{Kind: EventHello, Agent: &AgentInfo{Version: "v", KernelRelease: "6.1.0", Root: "tmpfs"}},
		{Kind: EventProgress, Stage: "checks", Message: "running 3 checks"},
		{Kind: EventReport, Report: &reports.Report{Command: "doctor", Findings: []reports.Finding{{ID: "x", Status: reports.Pass}}}},
		{Kind: EventDone},
	}
	for _, ev := range sent {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	// Blank lines, CRLF and a last line without its newline are read too.
	stream := "\n" + strings.ReplaceAll(buf.String(), "\n", "\r\n") + `{"kind":"log","message":"last"}`
	dec := NewDecoder(strings.NewReader(stream))
	var got []Event
	for {
		var ev Event
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != len(sent)+1 {
		t.Fatalf("got %d events, want %d", len(got), len(sent)+1)
	}
	if got[0].Agent == nil || got[0].Agent.Root != "tmpfs" || got[2].Report == nil || got[2].Report.Findings[0].ID != "x" || got[4].Message != "last" {
		t.Errorf("events came back different: %+v", got)
	}

	var ev Event
	if err := NewDecoder(strings.NewReader("{not json}\n")).Decode(&ev); err == nil || !strings.Contains(err.Error(), "not json") {
		t.Errorf("bad line: error %v, want one quoting the line", err)
	}
	long := `{"kind":"log","message":"` + strings.Repeat("x", maxLine) + `"}` + "\n"
	if err := NewDecoder(strings.NewReader(long)).Decode(&ev); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: error %v, want ErrLineTooLong", err)
	}
}
