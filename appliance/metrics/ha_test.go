package metrics

import "testing"

// value reads one unlabelled counter or gauge from the registry.
func value(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			x := f.GetMetric()[0]
			if c := x.GetCounter(); c != nil {
				return c.GetValue()
			}
			return x.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestHAMetrics(t *testing.T) {
	m := New("test")
	tests := []struct {
		name          string
		do            func()
		wantConflicts float64
		wantLeader    float64
	}{
		{"start", func() {}, 0, 0},
		{"elected", func() { m.RunnerLeader(true) }, 0, 1},
		{"two conflicts", func() { m.ObserveConflict(); m.ObserveConflict() }, 2, 1},
		{"lost the role", func() { m.RunnerLeader(false) }, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			if got := value(t, m, "tokend_store_conflicts_total"); got != tc.wantConflicts {
				t.Errorf("tokend_store_conflicts_total = %v, want %v", got, tc.wantConflicts)
			}
			if got := value(t, m, "tokend_runner_leader"); got != tc.wantLeader {
				t.Errorf("tokend_runner_leader = %v, want %v", got, tc.wantLeader)
			}
		})
	}
}
