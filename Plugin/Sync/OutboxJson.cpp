#include "Sync/OutboxJson.h"

#include "Common/Clock.h"

#include <json/json.h>

#include <memory>

namespace AzureDicom
{
Json::Value ToJsonTime(int64_t ms)
{
  return ms == 0 ? Json::Value(Json::nullValue) : Json::Value(FormatIsoTime(ms));
}


Json::Value ToJson(const OutboxItem& item)
{
  Json::Value json;
  json["ID"] = item.instance.orthancId;
  json["Sequence"] = Json::Int64(item.id);
  json["SOPInstanceUID"] = item.instance.sopInstanceUid;
  json["SeriesInstanceUID"] = item.instance.seriesInstanceUid;
  json["StudyInstanceUID"] = item.instance.studyInstanceUid;
  json["ParentStudy"] = item.instance.orthancStudyId;
  json["Size"] = Json::UInt64(item.instance.size);
  json["State"] = ToString(item.state);
  json["Attempts"] = item.attempts;
  json["StatusCode"] = item.statusCode;
  json["FailureReason"] = item.failureReason;
  json["WarningReason"] = item.warningReason;
  json["Message"] = item.message;
  json["Destination"] = item.destination;
  json["QueuedAt"] = ToJsonTime(item.queuedAt);
  json["UpdatedAt"] = ToJsonTime(item.updatedAt);
  json["NextAttemptAt"] = item.state == ItemState::Pending ? ToJsonTime(item.nextAttemptAt)
                                                          : Json::Value(Json::nullValue);
  json["SentAt"] = ToJsonTime(item.sentAt);
  json["SentTo"] = item.sentTo.IsEmpty() ? Json::Value(Json::nullValue) : ToJson(item.sentTo);
  json["CreatedAtService"] = item.createdSequence > 0;
  json["ContentMD5"] = item.contentMd5;
  json["ContentConflict"] = item.contentConflict;
  json["DeleteRequested"] = item.deleteRequested;
  // The node that is sending the item, with a PostgreSQL outbox that several nodes share.
  json["ClaimedBy"] = item.claimedBy.empty() ? Json::Value(Json::nullValue) : item.claimedBy;
  return json;
}


Json::Value ToJson(const Destination& destination)
{
  Json::Value json;
  json["ServiceUrl"] = destination.serviceUrl;
  json["ApiVersion"] = destination.apiVersion;
  json["Partition"] = destination.partition;
  return json;
}


Json::Value ToJson(const SnapshotRecord& snapshot)
{
  Json::Value json;
  json["ID"] = std::to_string(snapshot.id);
  json["Label"] = snapshot.label;
  json["Reason"] = snapshot.reason;
  json["Time"] = ToJsonTime(snapshot.createdAt);

  Json::Value settings;
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  const std::string& text = snapshot.settings;
  if (!reader->parse(text.data(), text.data() + text.size(), &settings, &errors))
  {
    settings = Json::nullValue;
  }
  json["Settings"] = settings;
  json["Paused"] = snapshot.paused;
  json["Position"]["LastCreated"] = Json::Int64(snapshot.lastCreated);
  json["Position"]["LastQueued"] = Json::Int64(snapshot.lastQueued);
  json["Counts"] = ToJson(snapshot.counts);
  json["Path"] = "/azure-dicom/snapshots/" + std::to_string(snapshot.id);
  return json;
}


Json::Value ToJson(const RollbackRecord& rollback)
{
  Json::Value json;
  json["ID"] = std::to_string(rollback.id);
  json["Snapshot"] = std::to_string(rollback.snapshotId);
  json["SafetySnapshot"] = std::to_string(rollback.safetySnapshotId);
  json["State"] = ToString(rollback.state);
  json["Total"] = Json::UInt64(rollback.total);
  json["Deleted"] = Json::UInt64(rollback.deleted);
  json["NotFound"] = Json::UInt64(rollback.notFound);
  json["Failed"] = Json::UInt64(rollback.failed);
  json["Remaining"] = Json::UInt64(rollback.GetRemaining());
  json["Job"] = rollback.jobId;
  json["Message"] = rollback.message;
  json["Time"] = ToJsonTime(rollback.createdAt);
  json["UpdatedAt"] = ToJsonTime(rollback.updatedAt);
  return json;
}


Json::Value ToJson(const RollbackPlan& plan)
{
  Json::Value json;
  json["Delete"]["Instances"] = Json::UInt64(plan.instances);
  json["Delete"]["Bytes"] = Json::UInt64(plan.bytes);
  json["Delete"]["Destinations"] = Json::arrayValue;
  for (const DestinationShare& share : plan.destinations)
  {
    Json::Value entry = ToJson(share.destination);
    entry["Instances"] = Json::UInt64(share.instances);
    entry["Bytes"] = Json::UInt64(share.bytes);
    json["Delete"]["Destinations"].append(entry);
  }
  json["Delete"]["FirstItems"] = Json::arrayValue;
  for (const OutboxItem& item : plan.firstItems)
  {
    json["Delete"]["FirstItems"].append(ToJson(item));
  }

  json["DroppedPending"]["Instances"] = Json::UInt64(plan.droppedPending);
  json["DroppedPending"]["FirstItems"] = Json::arrayValue;
  for (const OutboxItem& item : plan.firstDropped)
  {
    json["DroppedPending"]["FirstItems"].append(ToJson(item));
  }
  json["InFlight"]["Instances"] = Json::UInt64(plan.inFlight);
  json["InFlight"]["FirstItems"] = Json::arrayValue;
  for (const OutboxItem& item : plan.firstInFlight)
  {
    json["InFlight"]["FirstItems"].append(ToJson(item));
  }
  json["AlreadyPresentKept"] = Json::UInt64(plan.alreadyPresentKept);
  return json;
}


Json::Value ToJson(const StateCounts& counts)
{
  Json::Value json(Json::objectValue);
  for (unsigned int i = 0; i < ITEM_STATE_COUNT; i++)
  {
    const ItemState state = static_cast<ItemState>(i);
    json[ToString(state)] = Json::UInt64(counts.Get(state));
  }
  return json;
}


Json::Value ToJson(const StudySummary& summary)
{
  Json::Value json;
  json["ID"] = summary.orthancStudyId;
  json["StudyInstanceUID"] = summary.studyInstanceUid;
  json["Instances"] = Json::UInt64(summary.instances);
  json["Bytes"] = Json::UInt64(summary.bytes);
  json["Counts"] = ToJson(summary.counts);
  return json;
}
}  // namespace AzureDicom
