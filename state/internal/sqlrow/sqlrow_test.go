package sqlrow

import (
	"errors"
	"testing"
)

// sliceRows is a result set of ints.
type sliceRows struct {
	vals []int
	i    int
	err  error
}

func (r *sliceRows) Next() bool { r.i++; return r.i <= len(r.vals) }
func (r *sliceRows) Err() error { return r.err }
func (r *sliceRows) Scan(dest ...any) error {
	*(dest[0].(*int)) = r.vals[r.i-1]
	return nil
}

func scanInt(r Row) (int, error) {
	var v int
	err := r.Scan(&v)
	if v < 0 {
		return 0, errors.New("negative")
	}
	return v, err
}

func TestCollect(t *testing.T) {
	got, err := Collect(&sliceRows{vals: []int{1, 2, 3}}, scanInt)
	if err != nil || len(got) != 3 || got[2] != 3 {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := Collect(&sliceRows{}, scanInt); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no rows: %#v, %v; want an empty, non-nil slice", got, err)
	}
	if _, err := Collect(&sliceRows{vals: []int{1, -1, 2}}, scanInt); err == nil {
		t.Fatal("a scan error was not returned")
	}
	boom := errors.New("connection lost")
	if _, err := Collect(&sliceRows{vals: []int{1}, err: boom}, scanInt); !errors.Is(err, boom) {
		t.Fatalf("the result set's error: %v", err)
	}
}
