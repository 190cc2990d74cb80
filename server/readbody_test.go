package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// readBody reads the whole body, and feeds the hash the same bytes, for
// bodies of every size around its steps, read in pieces of any size, with
// Content-Length declared or not; a body that fails before it ends is
// answered SerializationException, one over MaxBodyBytes 413.
func TestReadBody(t *testing.T) {
	const limit = 3*bodyStep + 100
	env := newEnv(t, Config{MaxBodyBytes: limit}, nil)
	read := func(body io.Reader, declared int64) (*bytes.Buffer, []byte, *apiError) {
		r, err := http.NewRequest(http.MethodPost, "/", body)
		require.NoError(t, err)
		r.ContentLength = declared
		h := env.srv.budget.newHold(context.Background())
		defer h.release()
		buf, sum := new(bytes.Buffer), sha256.New()
		aerr := env.srv.readBody(buf, r, h, sum, false, "PutRecords")
		return buf, sum.Sum(nil), aerr
	}
	payload := make([]byte, limit+1)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pieces := map[string]func(io.Reader) io.Reader{
		"whole": func(r io.Reader) io.Reader { return r },
		"half":  iotest.HalfReader,
		"eof":   iotest.DataErrReader, // io.EOF with the last bytes
		"odd":   func(r io.Reader) io.Reader { return &pieceReader{r: r, n: 1000} },
	}
	for _, n := range []int{0, 1, 511, 512, 513, bodyStep - 1, bodyStep, bodyStep + 1, 2 * bodyStep, 2*bodyStep + 1, limit} {
		for name, wrap := range pieces {
			for _, declared := range []int64{-1, int64(n)} {
				t.Run(fmt.Sprintf("%d/%s/%d", n, name, declared), func(t *testing.T) {
					want := payload[:n]
					buf, sum, aerr := read(wrap(bytes.NewReader(want)), declared)
					require.Nil(t, aerr)
					require.True(t, bytes.Equal(want, buf.Bytes()), "%d bytes read, want %d", buf.Len(), n)
					wantSum := sha256.Sum256(want)
					require.Equal(t, wantSum[:], sum)
				})
			}
		}
	}

	// One byte over the limit, declared or not.
	_, _, aerr := read(bytes.NewReader(payload), -1)
	require.NotNil(t, aerr)
	require.Equal(t, errRequestEntityTooLarge, aerr.Type)
	_, _, aerr = read(bytes.NewReader(payload), limit+1)
	require.NotNil(t, aerr)
	require.Equal(t, errRequestEntityTooLarge, aerr.Type)

	// A body that fails part way, in the first step or a later one.
	for _, n := range []int{0, 100, bodyStep, bodyStep + 100} {
		body := io.MultiReader(bytes.NewReader(payload[:n]), iotest.ErrReader(errors.New("connection reset")))
		_, _, aerr := read(body, -1)
		require.NotNil(t, aerr, "%d bytes then an error", n)
		require.Equal(t, errSerialization, aerr.Type)
		require.Contains(t, aerr.Msg, "Unable to read the request body")
	}
}

// pieceReader reads at most n bytes per Read.
type pieceReader struct {
	r io.Reader
	n int
}

func (p *pieceReader) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }
