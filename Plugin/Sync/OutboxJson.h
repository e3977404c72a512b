#pragma once

#include "Sync/Outbox.h"

#include <json/value.h>

namespace AzureDicom
{
// The REST representations of the outbox, with Orthanc's PascalCase keys.
Json::Value ToJson(const OutboxItem& item);
Json::Value ToJson(const StateCounts& counts);
Json::Value ToJson(const StudySummary& summary);
}  // namespace AzureDicom
