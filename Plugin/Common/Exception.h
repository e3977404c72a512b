#pragma once

#include <stdexcept>
#include <string>

namespace AzureDicom
{
enum class ErrorCode
{
  BadConfiguration,  // a configuration value is invalid: the plugin refuses to start
  BadRequest,        // a REST body or parameter is invalid: HTTP 400
  NotFound,          // a REST resource does not exist: HTTP 404
  Conflict,          // the request conflicts with the current state: HTTP 409
  NetworkError,      // the transport failed (DNS, connect, TLS, timeout, reset)
  ProtocolError,     // a remote server sent a response that breaks its protocol
  DatabaseError,     // the outbox database failed (locked, full disk, corrupt)
  Unauthorized,      // a credential could not obtain a token
  InternalError
};


// The one error type of the plugin. The message states what was expected, what came, and where
// (a URL, a SOP Instance UID or a configuration key).
class Exception : public std::runtime_error
{
public:
  Exception(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code)
  {
  }

  ErrorCode GetCode() const
  {
    return code_;
  }

  // The HTTP status that a REST route returns for this error.
  int GetHttpStatus() const
  {
    switch (code_)
    {
      case ErrorCode::BadConfiguration:
      case ErrorCode::BadRequest:
        return 400;
      case ErrorCode::NotFound:
        return 404;
      case ErrorCode::Conflict:
        return 409;
      case ErrorCode::NetworkError:
      case ErrorCode::ProtocolError:
      case ErrorCode::Unauthorized:
        return 502;
      case ErrorCode::DatabaseError:
        return 503;
      default:
        return 500;
    }
  }

private:
  ErrorCode code_;
};
}  // namespace AzureDicom
