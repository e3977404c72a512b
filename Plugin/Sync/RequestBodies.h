#pragma once

#include "Sync/OutboxItem.h"

#include <json/value.h>

#include <cstddef>
#include <set>
#include <string>
#include <vector>

namespace AzureDicom
{
// The checks of the REST API's request bodies, apart from the routes so that they can be tested
// and fuzzed without an Orthanc. Each throws Exception(BadRequest) with a message that names the
// field at fault and what was expected.

// The length in bytes after which DescribeJsonValue() cuts a string.
constexpr size_t MAX_DESCRIBED_CHARACTERS = 40;

// Returns a short form of a JSON value for an error message: a string in quotes, cut at a
// character boundary within MAX_DESCRIBED_CHARACTERS bytes, a number, boolean or null as
// written, "(an array)" or "(an object)".
std::string DescribeJsonValue(const Json::Value& value);

// Parses a body as a JSON object; an empty body is an empty object.
Json::Value ParseRequestBody(const char* data, size_t size);

// Rejects a key that is not in allowed, listing the allowed ones.
void CheckKeys(const Json::Value& body, const std::set<std::string>& allowed);

// Reads "Resources": an Orthanc ID or DICOM UID, or a non-empty array of them. A single string
// is accepted because Orthanc Explorer 2's custom buttons cannot build an array around one ID.
std::vector<std::string> ReadResourceIds(const Json::Value& body);


struct SyncRequest
{
  bool all = false;
  std::vector<std::string> resources;  // empty with all
  int priority = 0;
};

// POST /azure-dicom/sync: {"Resources": ids} or {"All": true}, and an optional "Priority".
SyncRequest ParseSyncRequest(const Json::Value& body, int defaultPriority);


struct RetryRequest
{
  bool byState = false;
  ItemState state = ItemState::Failed;  // Failed, Skipped or RolledBack, with byState
  std::vector<std::string> resources;   // without byState
};

// POST /azure-dicom/retry: {"State": "Failed"} (or "Skipped", "RolledBack") or {"Resources": ids}.
RetryRequest ParseRetryRequest(const Json::Value& body);


// POST /azure-dicom/snapshots: {} or {"Label": "..."}; returns the label.
std::string ParseSnapshotLabel(const Json::Value& body, size_t maxLength);


struct RollbackRequest
{
  bool dryRun = true;
  std::string confirm;  // the snapshot's ID, required without a dry run
  bool deleteFromService = true;
};

// POST /azure-dicom/snapshots/{id}/rollback: checks the types, and that a real run confirms
// snapshotId.
RollbackRequest ParseRollbackRequest(const Json::Value& body, const std::string& snapshotId);
}  // namespace AzureDicom
