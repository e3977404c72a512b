#include "Sync/OutboxJson.h"

#include "Common/Clock.h"

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
