package main

import (
	"testing"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// TestRefusesOnHost checks the guard that keeps the agent, which powers
// the machine off, from running outside a guest booted by kata-cr.
func TestRefusesOnHost(t *testing.T) {
	if inKataCRGuest() {
		t.Fatal("the test host's kernel command line carries the kata-cr guest marker")
	}
}

func TestHandlersRegistered(t *testing.T) {
	for _, k := range []string{"doctor", "shell", "checkpoint", "restore"} {
		if _, ok := handlers[agentapi.JobKind(k)]; !ok {
			t.Errorf("no handler for job kind %s", k)
		}
	}
}
