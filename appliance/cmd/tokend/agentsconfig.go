package main

import (
	"fmt"
	"math"
	"net"
	"time"
)

// RADIUSConfig configures the RADIUS door (agents of kind radius).
type RADIUSConfig struct {
	// Listen is the UDP address. The socket is bound only once a RADIUS
	// agent exists; empty turns the door off.
	Listen        string  `yaml:"listen"`
	RatePerAgent  float64 `yaml:"rate_per_agent"`  // requests per second per agent
	BurstPerAgent int     `yaml:"burst_per_agent"` // bucket size per agent
	MaxInFlight   int     `yaml:"max_in_flight"`   // requests decided at once; more are dropped
	// DuplicateWindow is how long answers are kept for retransmissions.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

// RESTAuthnConfig configures the RSA SecurID Authentication API door
// (agents of kind rest).
type RESTAuthnConfig struct {
	// Listen is the HTTPS address (RSA's port is 5555); empty turns the
	// door off.
	Listen string `yaml:"listen"`
}

func defaultRADIUS() RADIUSConfig {
	return RADIUSConfig{Listen: ":1812", RatePerAgent: 200, BurstPerAgent: 400, MaxInFlight: 256, DuplicateWindow: 10 * time.Second}
}

// agentProblems validates the agents' doors.
func (c *Config) agentProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.RADIUS.Listen != "" {
		checkListen(add, "radius.listen", c.RADIUS.Listen)
	}
	if r := c.RADIUS.RatePerAgent; !(r > 0) || math.IsInf(r, 0) {
		add("radius.rate_per_agent %v: must be a positive finite number", r)
	}
	if c.RADIUS.BurstPerAgent <= 0 {
		add("radius.burst_per_agent %d: must be positive", c.RADIUS.BurstPerAgent)
	}
	if c.RADIUS.MaxInFlight <= 0 {
		add("radius.max_in_flight %d: must be positive", c.RADIUS.MaxInFlight)
	}
	if c.RADIUS.DuplicateWindow <= 0 || c.RADIUS.DuplicateWindow > time.Minute {
		add("radius.duplicate_window %s: want more than 0 and at most 1m", c.RADIUS.DuplicateWindow)
	}
	if l := c.RESTAuthn.Listen; l != "" && checkListen(add, "rest_authn.listen", l) {
		for key, other := range map[string]string{"admin_listen": c.AdminListen, "ctkip_listen": c.CTKIPListen} {
			if _, _, err := net.SplitHostPort(other); err == nil && sameListener(l, other) {
				add("rest_authn.listen and %s: both are %q; they must differ", key, l)
			}
		}
	}
	return p
}
