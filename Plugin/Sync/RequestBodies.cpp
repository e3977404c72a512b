#include "Sync/RequestBodies.h"

#include "Common/Exception.h"
#include "Common/Json.h"

namespace AzureDicom
{
namespace
{
std::string ReadResourceId(const Json::Value& value, const std::string& where)
{
  if (!value.isString() || value.asString().empty())
  {
    throw Exception(ErrorCode::BadRequest, where + " must be a non-empty string: an Orthanc ID "
                                                   "or a DICOM UID");
  }
  return value.asString();
}


// Counts UTF-8 code points: every byte but the continuation bytes 10xxxxxx starts one.
size_t CountCharacters(const std::string& text)
{
  size_t count = 0;
  for (const char c : text)
  {
    count += (static_cast<unsigned char>(c) & 0xc0) != 0x80 ? 1 : 0;
  }
  return count;
}
}  // namespace


Json::Value ParseRequestBody(const char* data, size_t size)
{
  Json::Value body(Json::objectValue);
  if (size == 0)
  {
    return body;
  }

  std::string error;
  if (!ParseJson(body, error, data, size))
  {
    throw Exception(ErrorCode::BadRequest, "the request body is not valid JSON: " + error);
  }
  if (!body.isObject())
  {
    throw Exception(ErrorCode::BadRequest, "the request body must be a JSON object");
  }
  return body;
}


void CheckKeys(const Json::Value& body, const std::set<std::string>& allowed)
{
  for (const std::string& key : body.getMemberNames())
  {
    if (allowed.count(key) == 0)
    {
      std::string list;
      for (const std::string& name : allowed)
      {
        list += (list.empty() ? "\"" : ", \"") + name + "\"";
      }
      const std::string expected = list.empty() ? "an empty object or no body" : list;
      throw Exception(ErrorCode::BadRequest,
                      "unknown key \"" + key + "\" in the request body; expected " + expected);
    }
  }
}


std::vector<std::string> ReadResourceIds(const Json::Value& body)
{
  const Json::Value& resources = body["Resources"];
  if (resources.isString())
  {
    return {ReadResourceId(resources, "\"Resources\"")};
  }

  if (!resources.isArray() || resources.empty())
  {
    throw Exception(ErrorCode::BadRequest,
                    "\"Resources\" must be an Orthanc ID or DICOM UID, or a non-empty array of "
                    "them");
  }

  std::vector<std::string> ids;
  for (Json::ArrayIndex i = 0; i < resources.size(); i++)
  {
    ids.push_back(ReadResourceId(resources[i], "\"Resources\"[" + std::to_string(i) + "]"));
  }
  return ids;
}


std::string DescribeJsonValue(const Json::Value& value)
{
  if (value.isString())
  {
    const std::string& text = value.asString();
    if (text.size() <= MAX_DESCRIBED_CHARACTERS)
    {
      return "\"" + text + "\"";
    }

    // The cut moves back to the start of a UTF-8 sequence (not a 10xxxxxx byte), so that the
    // message stays valid UTF-8.
    size_t cut = MAX_DESCRIBED_CHARACTERS;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80)
    {
      cut--;
    }
    return "\"" + text.substr(0, cut) + "...\"";
  }
  if (value.isNumeric() || value.isBool())
  {
    return value.asString();
  }
  if (value.isNull())
  {
    return "null";
  }
  return value.isArray() ? "(an array)" : "(an object)";
}


SyncRequest ParseSyncRequest(const Json::Value& body, int defaultPriority)
{
  CheckKeys(body, {"Resources", "All", "Priority"});

  SyncRequest request;
  request.all = body.isMember("All");
  if (request.all == body.isMember("Resources"))
  {
    throw Exception(ErrorCode::BadRequest,
                    "the body needs either \"Resources\" (an array of IDs) or \"All\": true");
  }
  if (request.all && !(body["All"].isBool() && body["All"].asBool()))
  {
    throw Exception(ErrorCode::BadRequest,
                    "\"All\" must be true to back-fill the whole archive, not " +
                        DescribeJsonValue(body["All"]));
  }
  if (body.isMember("Priority") && !body["Priority"].isInt())
  {
    throw Exception(ErrorCode::BadRequest,
                    "\"Priority\" must be an integer from -2147483648 to 2147483647, not " +
                        DescribeJsonValue(body["Priority"]));
  }

  if (!request.all)
  {
    request.resources = ReadResourceIds(body);
  }
  request.priority = body.isMember("Priority") ? body["Priority"].asInt() : defaultPriority;
  return request;
}


RetryRequest ParseRetryRequest(const Json::Value& body)
{
  CheckKeys(body, {"Resources", "State"});

  RetryRequest request;
  request.byState = body.isMember("State");
  if (request.byState == body.isMember("Resources"))
  {
    throw Exception(ErrorCode::BadRequest,
                    "the body needs either \"State\" (\"Failed\", \"Skipped\" or \"RolledBack\") "
                    "or \"Resources\" (an array of IDs)");
  }

  if (!request.byState)
  {
    request.resources = ReadResourceIds(body);
    return request;
  }

  const Json::Value& state = body["State"];
  if (!state.isString() || !ParseItemState(request.state, state.asString()) ||
      (request.state != ItemState::Failed && request.state != ItemState::Skipped &&
       request.state != ItemState::RolledBack))
  {
    throw Exception(ErrorCode::BadRequest,
                    "invalid \"State\" " + DescribeJsonValue(state) +
                        ": expected \"Failed\", \"Skipped\" or \"RolledBack\"");
  }
  return request;
}


std::string ParseSnapshotLabel(const Json::Value& body, size_t maxLength)
{
  CheckKeys(body, {"Label"});
  if (!body.isMember("Label"))
  {
    return "";
  }

  const Json::Value& label = body["Label"];
  if (!label.isString() || CountCharacters(label.asString()) > maxLength)
  {
    throw Exception(ErrorCode::BadRequest, "\"Label\" must be a string of at most " +
                                               std::to_string(maxLength) + " characters, not " +
                                               DescribeJsonValue(label));
  }
  return label.asString();
}


RollbackRequest ParseRollbackRequest(const Json::Value& body, const std::string& snapshotId)
{
  CheckKeys(body, {"DryRun", "Confirm", "DeleteFromService"});

  for (const char* name : {"DryRun", "DeleteFromService"})
  {
    if (body.isMember(name) && !body[name].isBool())
    {
      throw Exception(ErrorCode::BadRequest, std::string("\"") + name +
                                                 "\" must be true or false, not " +
                                                 DescribeJsonValue(body[name]));
    }
  }
  if (body.isMember("Confirm") && !body["Confirm"].isString())
  {
    throw Exception(ErrorCode::BadRequest,
                    "\"Confirm\" must be the snapshot's ID as a string, not " +
                        DescribeJsonValue(body["Confirm"]));
  }

  RollbackRequest request;
  request.dryRun = body.get("DryRun", true).asBool();
  request.confirm = body.get("Confirm", "").asString();
  request.deleteFromService = body.get("DeleteFromService", true).asBool();

  if (!request.dryRun && request.confirm != snapshotId)
  {
    throw Exception(ErrorCode::BadRequest,
                    "\"Confirm\" must be \"" + snapshotId +
                        "\", the ID of the snapshot to roll back to; run a dry run first (\"DryRun\": "
                        "true) to see what the rollback deletes. Nothing was changed");
  }
  return request;
}
}  // namespace AzureDicom
