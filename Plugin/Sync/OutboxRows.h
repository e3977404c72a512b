#pragma once

#include "Sync/Database.h"
#include "Sync/OutboxItem.h"

#include <cstdint>
#include <string>

namespace AzureDicom
{
// Keys of PostgreSQL's transaction-level advisory locks that serialize the outbox's writes where
// row locks are not enough. Orthanc's PostgreSQL plugin uses small keys (42 and up), so these
// start from "AzDICOM" in ASCII to stay clear of them.
const int64_t LOCK_KEY_BASE = 0x417A4449434F4D00;
const int64_t MIGRATION_LOCK_KEY = LOCK_KEY_BASE + 1;
const int64_t FOLLOWER_LOCK_KEY = LOCK_KEY_BASE + 2;
const int64_t CREATED_SEQUENCE_LOCK_KEY = LOCK_KEY_BASE + 3;
const int64_t ROLLBACK_LOCK_KEY = LOCK_KEY_BASE + 4;

// The columns of the items table that ReadItem() expects, in its order.
extern const std::string ITEM_COLUMNS;

// Sets an item back to Pending as if it were queued at ?1: due at once, with attempts, status
// code, reasons and message cleared. The destination, the creation mark and the digest stay, for
// a later rollback or conflict check.
extern const std::string RESET_TO_PENDING;

// Reads a row selected with ITEM_COLUMNS.
OutboxItem ReadItem(const Query& query);
}  // namespace AzureDicom
