#pragma once

#include "Sync/Outbox.h"

#include <json/value.h>

namespace AzureDicom
{
// Formats milliseconds since the epoch as ISO 8601 UTC, or null for 0 (not set).
Json::Value ToJsonTime(int64_t ms);

// The REST representations of the outbox, with Orthanc's PascalCase keys.
Json::Value ToJson(const OutboxItem& item);
Json::Value ToJson(const StateCounts& counts);

Json::Value ToJson(const Destination& destination);

// A snapshot for the REST API, with its settings parsed back into JSON.
Json::Value ToJson(const SnapshotRecord& snapshot);

Json::Value ToJson(const RollbackRecord& rollback);

// The "Delete", "DroppedPending" and "AlreadyPresentKept" members of a rollback plan.
Json::Value ToJson(const RollbackPlan& plan);
Json::Value ToJson(const StudySummary& summary);
}  // namespace AzureDicom
