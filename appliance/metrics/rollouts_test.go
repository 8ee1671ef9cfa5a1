package metrics_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/metrics"
)

var _ appliance.RolloutRecorder = (*metrics.RolloutMetrics)(nil)

func TestRolloutUsers(t *testing.T) {
	m := metrics.New("test")
	r := m.Rollouts()
	r.RolloutUsers(appliance.RolloutResultDone, 10)
	r.RolloutUsers(appliance.RolloutResultDone, 3)
	r.RolloutUsers(appliance.RolloutResultFailed, 1)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tokend_rollout_users_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				got[l.GetName()+"="+l.GetValue()] = mt.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{"result=done": 13, "result=failed": 1, "result=skipped": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("tokend_rollout_users_total (-want +got):\n%s", diff)
	}
}
