import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { RecordCounts } from './counts.js';
import type { Overlay } from './overlay.js';
import type { StoreFigures } from './types.js';
import type { WriteAheadLog } from './wal.js';

/** What a store's figures are read from. */
export interface FigureSources {
  readonly counts: RecordCounts;
  readonly log: WriteAheadLog;
  readonly overlay: Overlay;
  /** Remote writes refused because they may bring back a purged key. */
  readonly refused: number;
  /** The data directory. */
  readonly path: string;
}

/** The store's figures, for STATS and metrics (Store.figures). */
export function storeFigures(p: FigureSources): StoreFigures {
  const { counts, log, overlay } = p;
  return {
    keys: counts.live,
    tombstones: counts.tombstones,
    expiring: counts.expiringCount,
    fsync: log.mode,
    persistence: log.mode === 'none' ? 'cache' : 'disk',
    syncLagMs: log.syncLagMs,
    syncs: log.syncs,
    pendingWrites: overlay.size,
    pendingBytes: overlay.pendingBytes,
    lmdbLagMs: overlay.lagMs,
    lmdbBatches: overlay.batchesApplied,
    lmdbFailures: overlay.applyFailures,
    lmdbBytes: lmdbBytes(p.path),
    refusedPurged: p.refused,
  };
}

/** The size of LMDB's data file (0 if it cannot be read). */
function lmdbBytes(path: string): number {
  try {
    return statSync(join(path, 'data.mdb')).size;
  } catch {
    return 0;
  }
}
