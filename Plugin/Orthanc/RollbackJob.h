#pragma once

#include "Orthanc/PluginContext.h"

#include <json/value.h>

#include <memory>
#include <string>

namespace AzureDicom
{
// The plan of a rollback to a snapshot, as POST /azure-dicom/snapshots/{id}/rollback returns it
// for a dry run: the settings diff, what would be deleted and dropped, and the items in flight.
Json::Value PlanRollback(PluginContext& context, const SnapshotRecord& snapshot,
                         bool deleteFromService);

// Runs a rollback: takes a snapshot, restores the snapshot's settings, marks what to delete and
// drop and submits the job that deletes. Returns the job's ID, the plan and the snapshot taken.
// Throws Exception(BadRequest) when the current configuration file rejects the snapshot's
// settings, and Exception(Conflict) while another rollback runs.
Json::Value RunRollback(PluginContext& context, const SnapshotRecord& snapshot,
                        bool deleteFromService);


// Deletes at the service, as an Orthanc job, the items of one rollback. Its progress is in the
// outbox, so a new job after a restart (from Orthanc's job registry, or submitted by the plugin
// where SaveJobs is false) goes on where the last one stopped.
class RollbackJob
{
public:
  RollbackJob(PluginContext& context, int64_t rollbackId);
  ~RollbackJob();

  RollbackJob(const RollbackJob&) = delete;
  RollbackJob& operator=(const RollbackJob&) = delete;

  // Submits a job for the rollback and records its ID in the outbox; returns the ID.
  static std::string Submit(PluginContext& context, int64_t rollbackId);

  // Lets Orthanc re-create the jobs of its registry after a restart.
  static void RegisterUnserializer(OrthancPluginContext* orthanc, PluginContext* (*getContext)());

  // Hands the job to Orthanc's C API, which owns it from then on.
  static OrthancPluginJob* CreateHandle(std::unique_ptr<RollbackJob> job);

private:
  OrthancPluginJobStepStatus Step();
  OrthancPluginJobStepStatus Finish();
  void DeleteItem(const OutboxItem& item, int64_t snapshotId);
  void WaitAfterFailure(const std::string& message);
  float GetProgress();
  const char* GetContent();
  const char* GetSerialized();
  void Stop(OrthancPluginJobStopReason reason);

  PluginContext& context_;
  int64_t rollbackId_;
  bool claimed_;  // false when another job of this process runs the same rollback
  std::unique_ptr<IStowSender> sender_;
  unsigned int failures_ = 0;  // transient failures in a row
  std::string lastFailure_;
  std::string content_;
  std::string serialized_;
};
}  // namespace AzureDicom
