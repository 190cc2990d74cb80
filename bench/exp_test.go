package bench

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestExpOrder(t *testing.T) {
	order := os.Getenv("EXP_ORDER")
	if order == "" {
		t.Skip()
	}
	cfg := DefaultAppendConfig()
	cfg.NoSync = os.Getenv("EXP_NOSYNC") != ""
	cfg.Records = 1_000_000
	p := newPool(65500, 100, 1)
	prog := newProgress(nil, 0)
	dir := t.TempDir()
	for _, c := range strings.Split(order, "") {
		var m Measurement
		var err error
		if c == "c" {
			m, err = appendCeiling(context.Background(), dir, &cfg, p, prog)
		} else {
			m, err = appendEngine(context.Background(), dir, &cfg, p, prog)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %.0f rec/s p50 %v p99 %v", c, m.RecordsPerSec, m.P50, m.P99)
	}
}
