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
Json::Value ToJson(const StudySummary& summary);
}  // namespace AzureDicom
