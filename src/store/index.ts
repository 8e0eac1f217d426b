/*
 * The store's face: the only module other folders import from src/store/ (enforced by ESLint's
 * no-restricted-imports). Everything not exported here is the store's own business.
 */
export { Store } from './store.js';
export { listBackups, type BackupResult } from './backup.js';
export { Capacity, StorageFullError } from './capacity.js';
export type { CopiedRecords, CopyResult, Hashes, Held, MerkleView, Read, StoreFigures, StoreOptions } from './types.js';
export type { Ack, AcknowledgedWrite } from './writepath.js';
export type { KeyHashRanges, StoredEntry } from './keyhash.js';
export type { FsyncMode, LogMode } from './wal.js';
// A cache node's data directory (`[storage] persistence_enabled = false`).
export { cacheDirectory, freshCacheDirectory, removeCacheDirectory } from './cache.js';

// The key-value operations that build on what a key holds (operations.ts, setops.ts).
export { casUnique, expire, expiresAt, hasExpired, increment, readItem, setsGrowth, setWithExpiry, timeToLive, truncate, writeItem, type IncrementResult, type Item } from './operations.js';
export { addMembers, addMembersGrowth, countMembers, hasMember, listMembers, removeMembers, type SetResult } from './setops.js';

// A record's state and its kinds, as replication and anti-entropy carry them (state.ts, counter.ts, members.ts).
export { encodeState, isSimpleState, newestWall, parseBody, plainState, stateKind, stateOf, type ExpiryRegister, type RecordState } from './state.js';
export { decodeCounter, encodeCounter, MAX_COUNTER_NODES, parseInt64, sortByNode, type Counter, type CounterEntry } from './counter.js';
export { checkKeyKind, checkRecordKey, decodeMember, encodeMember, MAX_MEMBER_NODES, memberKey, memberProblem, splitMemberKey, type MemberEntry } from './members.js';

// The record's fields, read and framed only by record.ts.
export { FLAG_TOMBSTONE, isSimple, isTombstone, KIND, kindFlags, ITEM_OFFSET, recordBody, recordFlags, recordItem, recordKeyHashBytes, recordKeyHashHi, recordValue, recordVersionOf } from './record.js';
export { decodeTransfer, encodeTransfer, transferOf, type TransferFields } from './transfer.js';
