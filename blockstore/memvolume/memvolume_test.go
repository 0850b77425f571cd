package memvolume_test

import (
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

func TestConformance(t *testing.T) {
	volumetest.Run(t, func(t *testing.T, p blockstore.TrashPolicy) blockstore.Volume {
		return memvolume.New(p)
	}, volumetest.Options{})
}
